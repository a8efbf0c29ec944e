namespace Tidemark.Formats.Tests;

public sealed class SolutionLayoutTests
{
    [Fact]
    public void ConformanceData_IsBesideTheRepository()
        => Assert.True(File.Exists(Path.Combine(Tidemark.Testing.Repository.LibvirtConformance, "README.md")));
}
