using OnnxViTQ.Runtime;

namespace OnnxViTQ.Tests.Support;

/// <summary>
/// What a test that runs the runtime-ops library does when the library is missing. The library is
/// a part of this repository, built by <c>dotnet build</c>, not optional hardware: under CI
/// (<c>CI=true</c>, which <c>.ci/run</c> sets) its absence fails the test, so that a CI run cannot
/// pass without running one kernel. Elsewhere (a machine without cmake) the test is skipped with
/// the reason.
/// </summary>
internal static class NativeOpsAvailability
{
    public static bool UnderCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static void Require()
    {
        if (NativeOps.Unavailable is not { } why) return;
        if (UnderCi) Assert.Fail($"CI=true and the native runtime ops are missing: {why}");
        Assert.Ignore($"{why} (outside CI; with CI=true this fails)");
    }
}
