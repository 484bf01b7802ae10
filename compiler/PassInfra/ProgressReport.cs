namespace OnnxViTQ;

/// <summary>Progress of a long pass (calibration, search): <paramref name="Done"/> of <paramref name="Total"/> units.</summary>
/// <param name="Stage">What is running, e.g. "calibration".</param>
/// <param name="Done">Units done so far.</param>
/// <param name="Total">Units in all.</param>
/// <param name="Unit">What a unit is, e.g. "samples".</param>
public sealed record ProgressReport(string Stage, long Done, long Total, string Unit);
