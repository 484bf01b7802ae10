using System.CommandLine;
using Spectre.Console;

namespace OnnxViTQ.Cli;

/// <summary>Exit codes of <c>onnxvitq</c>.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Invalid command line (reported by System.CommandLine with usage help).</summary>
    public const int Usage = 1;
    /// <summary>Bad input: missing or malformed file, data that does not fit the model, ...</summary>
    public const int BadInput = 2;
    /// <summary>A bug: an unexpected exception.</summary>
    public const int Internal = 70;
}

/// <summary>The <c>onnxvitq</c> command line. <see cref="Run"/> takes the writers so tests can
/// drive it in-process.</summary>
public static class CliApp
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var console = CreateConsole(stdout);
        var io = new CliIO(console, stdout, stderr, Interactive: ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected);
        var root = new RootCommand("onnxvitq: post-training quantization of ONNX vision transformers (ViT, DeiT, Swin).\n" +
                                   "Exit codes: 0 ok, 1 invalid arguments, 2 bad input (message on stderr), 70 internal error.")
        {
            QuantizeCommand.Create(io),
            EvalCommand.Create(io),
            BenchCommand.Create(io),
            InspectCommand.Create(io),
            OutliersCommand.Create(io),
            ConvertCommand.Create(io),
            PreprocessCommand.Create(io),
        };
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        return root.Parse(args).Invoke(config);
    }

    /// <summary>Runs a command body, turning input problems into one line on stderr.</summary>
    internal static int Guard(CliIO io, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (OnnxViTQException e)
        {
            io.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.BadInput;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            io.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.BadInput;
        }
        catch (Exception e)
        {
            io.Error.WriteLine($"internal error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("ONNXVITQ_DEBUG") == "1") io.Error.WriteLine(e);
            else io.Error.WriteLine("(set ONNXVITQ_DEBUG=1 for the stack trace)");
            return ExitCodes.Internal;
        }
    }

    private static IAnsiConsole CreateConsole(TextWriter writer)
    {
        bool real = ReferenceEquals(writer, Console.Out);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = real ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = real ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = real ? InteractionSupport.Detect : InteractionSupport.No,
        });
        // Redirected output has no terminal width; don't wrap tables at 80 columns in logs.
        if (!real || Console.IsOutputRedirected) console.Profile.Width = 160;
        return console;
    }
}

/// <summary>Where a command writes: a Spectre console over stdout, the raw writers, and whether
/// live progress bars may be drawn.</summary>
internal sealed record CliIO(IAnsiConsole Console, TextWriter Out, TextWriter Error, bool Interactive);
