using System.Globalization;

namespace Tidemark.Testing;

/// <summary>
/// A seeded series of kill trials, a number per scenario, the scenarios taken in turn (one
/// whose trials are used up drops out of the turn). The default seed
/// is fixed (<c>TIDEMARK_CRASH_SEED</c> overrides it), every failure names the seed, the trial
/// and the choices drawn for it, and a series with push trials fails unless some kill cut a
/// push job short.
/// Where a kill lands depends on timing too, so a seed replays the same choices, not
/// necessarily the same kill point.
/// </summary>
public static class CrashTrials
{
    private const int DefaultSeed = 20261130;

    /// <param name="run">Runs one trial; true when the kill cut short what the scenario is about (a backup job, a checkpoint creation).</param>
    /// <returns>How many trials' kills cut it short.</returns>
    public static Task<int> RunAsync(int trialsPerScenario, IReadOnlyList<string> scenarios, Func<CrashTrial, Task<bool>> run)
        => RunAsync([.. scenarios.Select(s => (s, trialsPerScenario))], run);

    /// <param name="scenarios">Each scenario with its number of trials.</param>
    /// <param name="run">Runs one trial; true when the kill cut short what the scenario is about (a backup job, a checkpoint creation).</param>
    /// <returns>How many trials' kills cut it short.</returns>
    public static async Task<int> RunAsync(IReadOnlyList<(string Scenario, int Trials)> scenarios, Func<CrashTrial, Task<bool>> run)
    {
        var seed = Environment.GetEnvironmentVariable("TIDEMARK_CRASH_SEED") is { Length: > 0 } s ? int.Parse(s, CultureInfo.InvariantCulture) : DefaultSeed;
        var random = new Random(seed);
        var (pushesCut, cut) = (0, 0);

        // Round by round, so with equal counts the order (and a seed's draws) is as it always was.
        var order = Enumerable.Range(0, scenarios.Max(s => s.Trials))
            .SelectMany(round => scenarios.Where(s => s.Trials > round).Select(s => s.Scenario)).ToList();
        for (var number = 0; number < order.Count; number++)
        {
            var trial = new CrashTrial(number, order[number], random);
            try
            {
                var cutShort = await run(trial);
                cut += cutShort ? 1 : 0;
                pushesCut += cutShort && trial.Scenario == "push" ? 1 : 0;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}, {trial}: {e.Message}", e);
            }
        }

        // The kills did land inside push jobs, not only between them.
        Assert.True(pushesCut > 0 || !order.Contains("push"), $"seed {seed}: no push trial was killed while a job ran");
        return cut;
    }
}

/// <summary>One trial of a <see cref="CrashTrials"/> series: its scenario and the seeded choices it draws.</summary>
public sealed class CrashTrial
{
    private readonly Random _random;
    private readonly List<string> _choices = [];

    internal CrashTrial(int number, string scenario, Random random)
    {
        Number = number;
        Scenario = scenario;
        _random = random;
    }

    public int Number { get; }

    public string Scenario { get; }

    /// <summary>Draws a value in [<paramref name="min"/>, <paramref name="max"/>) and remembers it for the failure message.</summary>
    public int Draw(string what, int min, int max)
    {
        var value = _random.Next(min, max);
        _choices.Add(string.Create(CultureInfo.InvariantCulture, $"{what} {value}"));
        return value;
    }

    /// <summary>A seed for what the trial randomises further (the guests' writes).</summary>
    public int DrawSeed() => _random.Next();

    public override string ToString() => $"trial {Number} ({string.Join(", ", [Scenario, .. _choices])})";
}
