return OnnxViTQ.Cli.CliApp.Run(args, Console.Out, Console.Error);
