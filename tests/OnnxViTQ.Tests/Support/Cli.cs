using OnnxViTQ.Cli;

namespace OnnxViTQ.Tests.Support;

/// <summary>The <c>onnxvitq</c> command line run in-process, its output captured.</summary>
public static class Cli
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
