using System.CommandLine;

namespace OnnxViTQ.Cli;

/// <summary><c>--exclude</c>, shared by quantize and inspect.</summary>
internal static class ExcludeOption
{
    public static Option<string[]> Create() => new("--exclude")
    {
        Description = "Keep in float (repeatable): a node name, a tensor name, an op type (Conv), a module (\"mlp 11\", head, as inspect lists them) " +
                      "or re:<regular expression> searched in node names; each must match something",
        AllowMultipleArgumentsPerToken = false,
        Arity = ArgumentArity.OneOrMore,
    };
}
