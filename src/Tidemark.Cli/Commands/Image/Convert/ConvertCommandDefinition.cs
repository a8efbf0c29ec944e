using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Convert;

/// <summary><c>tidemark image convert [-f FMT] [-O qcow2|raw] [-c] [-n] [--target-is-zero] [-B BACKING [-F FMT]] [--bitmaps [--skip-broken-bitmaps]] [-o OPTIONS] SRC DST</c>.</summary>
internal static class ConvertCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var sourceFormat = new Option<string?>("-f") { Description = "Source format (probed when omitted)." };
        var targetFormat = new Option<string>("-O") { Description = "Target format: raw (default, as qemu-img) or qcow2.", DefaultValueFactory = _ => "raw" };
        var compress = new Option<bool>("-c") { Description = "Compress the target's clusters (qcow2 only)." };
        var cache = new Option<string>("-t") { Description = "Target cache mode: unsafe (default, as qemu-img convert: no fsync) or writeback (fsync at the end).", DefaultValueFactory = _ => "unsafe" };
        cache.AcceptOnlyFromAmong("unsafe", "writeback");
        var options = new Option<string[]>("-o") { Description = "Target format options (as image create -o)." };
        var backing = new Option<string?>("-B") { Description = "Backing file of the new target (qcow2); only clusters whose content differs from it are written." };
        var backingFormat = new Option<string?>("-F") { Description = "Format of the -B backing file (required, as qemu-img 7.2)." };
        var skipCreate = new Option<bool>("-n") { Description = "The target exists: write into it instead of creating it." };
        var targetIsZero = new Option<bool>("--target-is-zero") { Description = "With -n: the target reads as zeroes already, so zeroes are not written." };
        var bitmaps = new Option<bool>("--bitmaps") { Description = "Copy the source's persistent dirty bitmaps to the target (qcow2 v3 to qcow2 v3)." };
        var skipBroken = new Option<bool>("--skip-broken-bitmaps") { Description = "With --bitmaps: leave inconsistent bitmaps out instead of refusing." };
        var source = new Argument<string>("SRC") { Description = "Source image." };
        var target = new Argument<string>("DST") { Description = "Target image (created, overwritten if it exists, unless -n)." };
        var command = new Command("convert", "Copy an image's guest content into a new or existing image of the same or another format, sparsely: holes and zeroes are not written.");
        command.Options.Add(sourceFormat);
        command.Options.Add(targetFormat);
        command.Options.Add(compress);
        command.Options.Add(cache);
        command.Options.Add(options);
        command.Options.Add(backing);
        command.Options.Add(backingFormat);
        command.Options.Add(skipCreate);
        command.Options.Add(targetIsZero);
        command.Options.Add(bitmaps);
        command.Options.Add(skipBroken);
        command.Arguments.Add(source);
        command.Arguments.Add(target);
        command.SetAction((r, ct) => new ConvertCommand(console).RunAsync(
            new ConvertSettings
            {
                Source = r.GetValue(source)!,
                SourceFormat = r.GetValue(sourceFormat),
                Target = r.GetValue(target)!,
                TargetFormat = r.GetValue(targetFormat)!,
                Compress = r.GetValue(compress),
                Cache = r.GetValue(cache) == "writeback" ? Storage.CacheMode.Writeback : Storage.CacheMode.Unsafe,
                Options = r.GetValue(options) ?? [],
                Backing = r.GetValue(backing),
                BackingFormat = r.GetValue(backingFormat),
                SkipCreate = r.GetValue(skipCreate),
                TargetIsZero = r.GetValue(targetIsZero),
                Bitmaps = r.GetValue(bitmaps),
                SkipBrokenBitmaps = r.GetValue(skipBroken),
            },
            ct));
        return command;
    }
}
