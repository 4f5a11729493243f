"""The ``leanse`` command.

    leanse data demo --out DIR            write the embedded demo corpus
    leanse data real --out DIR            real speech + noise from Debian packages, and the dev set
    leanse run RECIPE [key=value ...]     the whole job: train, score, enhance an example, report
    leanse train RECIPE [key=value ...]   train only (resumes a killed run)
    leanse evaluate CHECKPOINT --data D   score a model on a fixed test list
    leanse profile MODEL --seconds S      parameters, MACs, bytes, real-time factor
    leanse enhance IN.wav|DIR ... -o OUT --model CHECKPOINT   (or a bundled name: leanse-base)
    leanse models                         list the bundled pretrained models
    leanse export CHECKPOINT -o model.onnx [--stream] [--int8]   ONNX export, checked in onnxruntime
    leanse compare MODEL... --data D -o OUT   models, exits and peers on the same files: report + page
    leanse serve [--models ...]           a local page to hear a model on your own file
    leanse compress CHECKPOINT --pipeline c1|c2 --data RECIPE [-o OUT]   004's compression

A mistake in the input (bad audio, a recipe typo, a foreign checkpoint) prints one line that says
what to do and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from leanse.errors import LeanseError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except LeanseError as err:
        print(f"leanse: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leanse: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanse", description="Efficient speech enhancement.")
    commands = parser.add_subparsers(metavar="COMMAND")

    data = commands.add_parser("data", help="build a corpus: the embedded demo or real speech").add_subparsers(
        metavar="WHAT")
    demo = data.add_parser("demo", help="write the embedded demo corpus (LibriSpeech / MUSAN layout)")
    demo.add_argument("--out", required=True, type=Path,
                      help="a new or empty folder (or one holding a demo corpus from an earlier run)")
    demo.add_argument("--speakers", type=int, default=40,
                      help="pseudo-speakers over train / dev / test, each gender balanced (default 40)")
    demo.add_argument("--utterances-per-speaker", type=int, default=20, help="utterances of 2-6 s each (default 20)")
    demo.add_argument("--seed", type=int, default=0, help="the same seed writes byte-identical files (default 0)")
    demo.add_argument("--workers", type=int, default=None,
                      help="synthesis processes run at once (default: the number of CPU cores)")
    demo.set_defaults(handler=cmd_data_demo)
    real = data.add_parser(
        "real", help="build the real-speech corpus and dev set from Debian's archive (apt-get download)")
    real.add_argument("--out", required=True, type=Path, help="an empty folder for the corpus")
    real.add_argument("--debs", type=Path, default=None,
                      help="a folder that already holds the .deb files (skips apt-get download)")
    real.add_argument("--dev-mixtures", type=int, default=300, help="size of the fixed dev set")
    real.set_defaults(handler=cmd_data_real)

    for name, handler, text in (
        ("run", cmd_run, "train, score, enhance an example and write the report"),
        ("train", cmd_train, "train the recipe's model(s); a killed run resumes"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("recipe", type=Path, help="a recipe YAML, e.g. recipes/mask_rnn/tiny.yaml")
        sub.add_argument("overrides", nargs="*", metavar="key=value",
                         help="change any recipe field, e.g. train.max_epochs=5 data.batch_size=8")
        sub.set_defaults(handler=handler)

    models = commands.add_parser("models", help="list the pretrained models bundled with leanse")
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    models.set_defaults(handler=cmd_models)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint on a fixed test list")
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint folder (e.g. runs/NAME/best)")
    evaluate.add_argument("--data", required=True, type=Path,
                          help="a recipe YAML (its data section) or a LibriSpeech + MUSAN / demo corpus folder")
    evaluate.add_argument("--list", type=Path, help="a stored test list (test_list.csv of a run)")
    evaluate.add_argument("--out", type=Path, help="folder for per_file.csv and summary.json")
    evaluate.add_argument("--test-size", type=int, default=None,
                          help="number of test mixtures (default: the data section's test_size)")
    evaluate.add_argument("--workers", type=int, default=2, help="processes scoring PESQ / STOI (default 2)")
    evaluate.add_argument("--blocks", type=int, default=None, help="scalable models: run only the first l blocks")
    evaluate.add_argument("--source", type=int, default=None, help="separation models: which output to score")
    evaluate.set_defaults(handler=cmd_evaluate)

    profile = commands.add_parser("profile", help="parameters, MACs, bytes on disk, real-time factor")
    profile.add_argument("model", help="a preset name or a checkpoint folder")
    profile.add_argument("--seconds", type=float, default=1.0,
                         help="length of the seeded noise input the counts are for (default 1 s)")
    profile.add_argument("--convention", choices=["paper", "exact"], default="paper",
                         help="MACs as thop / the papers count them (paper) or every multiply run (exact)")
    profile.add_argument("--json", action="store_true", help="print one JSON object")
    profile.add_argument("--no-rtf", action="store_true", help="skip the timing")
    profile.add_argument("--blocks", type=int, default=None,
                         help="scalable models (BLOOM-Net): count only the first l blocks")
    profile.add_argument("--against", metavar="MODEL", default=None,
                         help="a reference (e.g. the generalist preset): also print the reduction against it")
    profile.set_defaults(handler=cmd_profile)

    enhance = commands.add_parser("enhance", help="enhance audio files with a trained model")
    enhance.add_argument("inputs", nargs="+", type=Path,
                         help="audio files, or folders: every audio file below keeps its relative path")
    enhance.add_argument("-o", "--out-dir", required=True, type=Path,
                         help="output folder (created); inputs are never overwritten")
    enhance.add_argument("--model", required=True, type=Path,
                         help="a checkpoint folder or a bundled model name (leanse models)")
    enhance.add_argument("--blocks", type=int, default=None,
                         help="scalable models (BLOOM-Net): run only the first l blocks (cheaper)")
    enhance.add_argument("--source", type=int, default=None, help="separation models: which output")
    enhance.add_argument("--chunk-seconds", type=float, default=10.0,
                         help="model input length; memory grows with it, not with the file (default 10 s)")
    enhance.add_argument("--stream", action="store_true",
                         help="run the model hop by hop with its state (causal models only): no chunk"
                              " borders, the output equals the offline output of the whole file")
    enhance.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                         help="onnx: --model is a file written by leanse export (with --stream: its"
                              " step graph)")
    enhance.add_argument("--atten-lim-db", type=float, default=None,
                         help="mask models: attenuate no bin by more than this many dB (keeps some"
                              " residual noise, and with it weak speech cues); default: the model's own")
    enhance.set_defaults(handler=cmd_enhance)

    export = commands.add_parser("export", help="export a checkpoint to ONNX and check it in onnxruntime")
    export.add_argument("checkpoint", type=Path, help="a checkpoint folder or a bundled model name")
    export.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write"
                        " (a .json with hop, latency and state names is written beside it)")
    export.add_argument("--stream", action="store_true",
                        help="export the streaming step graph (state tensors as inputs and outputs)")
    export.add_argument("--int8", action="store_true",
                        help="onnxruntime dynamic int8 quantization of MatMul/LSTM weights")
    export.add_argument("--data", type=Path, default=None,
                        help="with --int8: a recipe or corpus folder whose fixed test list scores"
                             " fp32 against int8 (SI-SDR, PESQ)")
    export.add_argument("--list", type=Path, default=None, help="a stored test list (test_list.csv)")
    export.add_argument("--test-size", type=int, default=None, help="score only the first N mixtures")
    export.set_defaults(handler=cmd_export)

    _add_compare_commands(commands)
    from leanse.compress.cli import add_compress_parser

    add_compress_parser(commands)
    return parser


def _add_compare_commands(commands: argparse._SubParsersAction) -> None:
    """``compare`` and ``serve`` (issue 11): each a thin call into its own module."""
    compare = commands.add_parser(
        "compare", help="models, exits and peers on the same files: report.md, results, plots, report.html")
    compare.add_argument("models", nargs="*", metavar="MODEL",
                         help="checkpoint folders, bundled names, RUN@l=N (a scalable model's exit)")
    compare.add_argument("--data", required=True, type=Path,
                         help="a recipe YAML (its fixed test list) or a folder: VoiceBank-DEMAND, clean/ + noisy/, "
                              "or noisy files only (then DNSMOS and cost only)")
    compare.add_argument("--peers", default="", help="comma-separated peers to run too: rnnoise,dfn3,noisereduce")
    compare.add_argument("-o", "--out", required=True, type=Path,
                         help="a new folder (or an interrupted comparison's folder, which resumes)")
    compare.add_argument("--limit", type=int, default=None, help="score only the first N files")
    compare.add_argument("--workers", type=int, default=1, help="scoring processes (0: score in this process)")
    compare.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS even when its extra is installed")
    compare.add_argument("--no-rtf", action="store_true", help="skip the RTF timing")
    compare.add_argument("--samples", type=int, default=4, help="files with audio players in report.html")
    compare.add_argument("--sample-rate", type=int, default=None,
                         help="rate to read and score the files at (default: the recipe's, else the highest "
                              "model rate); models at another rate run behind resampling")
    compare.set_defaults(handler=cmd_compare)

    serve = commands.add_parser("serve", help="a local web page: drop or record a file, hear it enhanced")
    serve.add_argument("--models", nargs="*", default=None, metavar="MODEL",
                       help="MODEL specs as for compare (default: the bundled models, else rnnoise)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (localhost only by default)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--max-mb", type=float, default=20.0, help="largest upload accepted, in MB")
    serve.set_defaults(handler=cmd_serve)


def cmd_compare(args: argparse.Namespace) -> int:
    from leanse.compare import compare_models

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    comparison = compare_models(args.models, args.data, args.out, peers=peers, limit=args.limit,
                                workers=args.workers, dnsmos=False if args.no_dnsmos else None,
                                rtf=not args.no_rtf, samples=args.samples, sample_rate=args.sample_rate)
    print((args.out / "report.md").read_text())
    for name, path in comparison.files.items():
        print(f"{name:>20}: {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from leanse.serve import serve

    serve(args.models, host=args.host, port=args.port, max_bytes=int(args.max_mb * 1e6))
    return 0


def cmd_data_demo(args: argparse.Namespace) -> int:
    from leanse.data.demo import write_demo_corpus

    summary = write_demo_corpus(
        args.out, speakers=args.speakers, utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed, workers=args.workers, progress=True,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_data_real(args: argparse.Namespace) -> int:
    from leanse.data.real import build_real_corpus

    summary = build_real_corpus(args.out, debs=args.debs, dev_mixtures=args.dev_mixtures, progress=True)
    brief = {k: v for k, v in summary.items() if k not in ("voices", "speakers")}
    print(json.dumps(brief, indent=2))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from leanse.pretrained import describe_bundled

    rows = describe_bundled()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no bundled models in this installation")
    for row in rows:
        scores = row["dev_set"]
        line = ", ".join(f"{k} {v}" for k, v in scores.items())
        print(f"{row['name']:<14} {row['summary']}" + (f"\n{'':<14} real-speech dev set: {line}" if line else ""))
        print(f"{'':<14} card: {row['folder']}/CARD.md")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from leanse.train.recipe import load_recipe
    from leanse.train.stages import run_recipe

    result = run_recipe(load_recipe(args.recipe, args.overrides))
    print()
    print(result.table)
    print()
    print(f"report:   {result.report}")
    print(f"enhanced: {result.enhanced}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from leanse.train.recipe import load_recipe
    from leanse.train.stages import train_recipe

    best = train_recipe(load_recipe(args.recipe, args.overrides))
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0":  # DDP: say it once
        print(f"best checkpoint: {best}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from leanse.checkpoint import load_checkpoint
    from leanse.config import from_dict, load_yaml
    from leanse.data.datamodule import DataConfig, build_mixers, fixed_mixtures
    from leanse.data.mixing import read_specs
    from leanse.errors import ConfigError
    from leanse.evaluate import evaluate_model

    model = load_checkpoint(args.checkpoint)
    if args.data.is_file():
        recipe = load_yaml(args.data)
        data = from_dict(DataConfig, recipe.get("data", recipe), "data")
    elif args.data.is_dir():
        from leanse.data.paired import is_paired_corpus

        if is_paired_corpus(args.data):  # VoiceBank-DEMAND, clean/ + noisy/: every test file, whole
            data = DataConfig(corpus="paired", root=str(args.data), sample_rate=model.sample_rate,
                              test_size=args.test_size or 10**9)
        else:
            data = DataConfig(corpus="librispeech", root=str(args.data), sample_rate=model.sample_rate,
                              snrs=[-5.0, 0.0, 5.0, 10.0])
    else:
        raise ConfigError(f"--data {args.data}: no such recipe file or corpus folder")
    if data.sample_rate != model.sample_rate:
        raise ConfigError(f"the model runs at {model.sample_rate} Hz but the data is at {data.sample_rate} Hz")
    if args.test_size:
        data.test_size = args.test_size
    mixers = build_mixers(data)
    specs = read_specs(args.list) if args.list else mixers.test_specs
    kwargs = _blocks_argument(model, args.blocks)
    result = evaluate_model(model, fixed_mixtures(mixers.test, specs), out_dir=args.out,
                            workers=args.workers, source=args.source, **kwargs)
    print(result.table())
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from leanse.checkpoint import is_checkpoint, load_checkpoint
    from leanse.complexity import profile_model, reduction
    from leanse.ensemble.gates import GATE_PRESETS, build_gate
    from leanse.models import build_model

    def load(name: str):
        if is_checkpoint(name):
            return load_checkpoint(name)
        if name in GATE_PRESETS:  # gates and speaker embeddings are classifiers, not enhancers
            return build_gate(name)
        return build_model(name)

    model = load(args.model)
    kwargs = _blocks_argument(model, args.blocks)
    profile = profile_model(model, args.seconds, convention=args.convention, rtf=not args.no_rtf, **kwargs)
    profile["model"] = str(args.model)  # the preset name or checkpoint the user asked about
    if args.against:
        # e.g. a hard-gated ensemble (gate + one specialist run) against the generalist (001 Sec. 4)
        reference = profile_model(load(args.against), args.seconds, convention=args.convention, rtf=False)
        profile["against"] = {"model": args.against, "params": reference["params"],
                              "effective_params": reference["effective_params"], "macs": reference["macs"]}
        profile["reduction"] = reduction(profile, reference)
    if args.json:
        print(json.dumps(profile))
    else:
        for key, value in profile.items():
            if key == "reduction":
                for what, fraction in value.items():
                    print(f"{'fewer ' + what:>18}: {100 * fraction:.1f} % than {args.against}")
            elif key != "against":
                print(f"{key:>18}: {value:,}" if isinstance(value, int) else f"{key:>18}: {value}")
    return 0


def cmd_enhance(args: argparse.Namespace) -> int:
    from leanse.checkpoint import load_checkpoint
    from leanse.enhance import enhance_files
    from leanse.streaming import engine_for_enhance

    if args.engine == "onnx" or args.stream:
        model, streamer_factory = engine_for_enhance(args.model, args.engine, args.stream, args.blocks)
        kwargs = {}
    else:
        model, streamer_factory = load_checkpoint(args.model), None
        kwargs = _blocks_argument(model, args.blocks)
    if args.atten_lim_db is not None:
        _set_attenuation_limit(model, args.atten_lim_db, args.engine)
    reports = enhance_files(args.inputs, args.out_dir, model, chunk_seconds=args.chunk_seconds,
                            source=args.source, streamer_factory=streamer_factory, **kwargs)
    for report in reports:
        print(report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from leanse.checkpoint import checkpoint_folder, load_checkpoint
    from leanse.compress.packed import packed_disk_sizes
    from leanse.errors import ConfigError
    from leanse.export import export_onnx, sidecar_path, fixed_test_mixtures

    model = load_checkpoint(args.checkpoint)
    if args.data is not None and not args.int8:
        raise ConfigError("--data scores int8 against fp32: add --int8 (or drop --data)")
    if args.data is not None and getattr(model, "num_sources", 1) > 1:
        raise ConfigError("--data scores an enhancement model against clean speech; this separation"
                          " model has no such score yet: drop --data")
    mixtures = (fixed_test_mixtures(args.data, model.sample_rate, args.list, args.test_size)
                if args.data is not None else None)
    packed_sizes = packed_disk_sizes(checkpoint_folder(args.checkpoint))
    sidecar = export_onnx(model, args.output, stream=args.stream, int8=args.int8,
                          meta={"checkpoint": str(args.checkpoint)}, quality_mixtures=mixtures,
                          packed_sizes=packed_sizes)
    parity = sidecar["parity"]
    print(f"wrote {args.output} ({sidecar['onnx_bytes']:,} bytes, {sidecar['graph']} graph"
          f"{', int8' if args.int8 else ''}) and {sidecar_path(args.output)}")
    if "specialists" in sidecar:  # an ensemble: the gate's graph + one graph per specialist
        print(f"and {len(sidecar['specialists'])} specialist graphs beside it"
              f" ({sidecar['onnx_bytes_all_graphs']:,} bytes with the gate's)")
    compressed = sidecar.get("compressed")
    if compressed:
        print(f"compressed checkpoint: exported its dequantized weights; ONNX"
              f" {compressed['onnx_bytes']:,} bytes vs packed folder"
              f" {compressed['packed_folder_bytes']:,} bytes"
              f" ({compressed['onnx_over_packed']:.1f}x; dense float32 weights"
              f" {compressed['dense_bytes']:,} bytes)")
    output_error = (f" (output {parity['output_max_abs_error']:.2e}; state errors are relative to"
                    " the state's size)" if "output_max_abs_error" in parity else "")
    print(f"checked in onnxruntime: {parity['checked']}: max |error| {parity['max_abs_error']:.2e}"
          + output_error)
    quality = sidecar.get("int8_quality")
    if quality:
        def fmt(value):
            return "n/a" if value is None else f"{value:+.3f}"
        print(f"int8 vs fp32 on {quality['mixtures']} test mixtures: SI-SDR"
              f" {quality['si_sdr_fp32']:.2f} -> {quality['si_sdr_int8']:.2f} dB"
              f" ({fmt(quality['si_sdr_change'])}), PESQ change {fmt(quality['pesq_change'])}")
    if sidecar.get("stream"):
        info = sidecar["stream"]
        print(f"hop {info['hop']} samples, latency {info['latency_samples']} samples"
              f" ({1000 * info['latency_samples'] / info['sample_rate']:.1f} ms) at {info['sample_rate']} Hz")
    sources = int(sidecar.get("num_sources", 1))
    if sources > 1:  # a separation model: every source is an output (enhance picks --source)
        shape = (f"y_hop [1, {sources}, {sidecar['stream']['hop']}]" if sidecar["graph"] == "step"
                 else f"enhanced [B, {sources}, T]")
        print(f"{sources} sources: the graph outputs {shape}")
    return 0


def _set_attenuation_limit(model, limit_db: float, engine: str) -> None:
    """``--atten-lim-db`` for mask models (the streamer shares the model, so it applies there too)."""
    from leanse.errors import ConfigError

    if engine == "onnx":
        raise ConfigError("--atten-lim-db: an ONNX file keeps the limit it was exported with; drop --atten-lim-db")
    if not hasattr(model, "attenuation_limit_db"):
        raise ConfigError(f"--atten-lim-db: this model ({model.config.get('name')}) has no mask to limit; drop it")
    if not limit_db > 0:
        raise ConfigError(f"--atten-lim-db must be a positive number of dB, not {limit_db}")
    model.attenuation_limit_db = limit_db


def _blocks_argument(model, blocks: int | None) -> dict:
    """``--blocks l`` for scalable models (BLOOM-Net); a clear error for models without blocks."""
    from leanse.errors import ConfigError

    if blocks is None:
        return {}
    import inspect

    if "blocks" not in inspect.signature(model.forward).parameters:
        raise ConfigError(f"--blocks: this model ({model.config.get('name')}) is not scalable; drop --blocks")
    model.check_blocks(blocks)
    return {"blocks": blocks}


if __name__ == "__main__":
    sys.exit(main())
