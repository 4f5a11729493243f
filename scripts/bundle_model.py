"""Copy a trained run's best checkpoint into the package as a bundled model, with its model card.

    python scripts/bundle_model.py runs/leanse_base_ft leanse-base --bench runs/real_dev \
        --recipe recipes/real/base.yaml recipes/real/base-finetune.yaml --minutes 105 90 \
        --summary "GRU 256x2 mask net, log-power features"

``--checkpoint`` bundles another folder than ``RUN/best`` (e.g. the run's weights with an
attenuation limit chosen by scripts/choose_attenuation_limit.py); its folder name is its row in
the bench's results. A model trained in stages (a fine-tuning recipe with ``train.init_from``) lists every recipe in
order, with the wall-clock minutes of each; the last one's run is ``run``.

The card's numbers come from the run's own files (training log, recipe) and from one run of
benchmarks/bench_real_dev.py (``--bench``: its results.json, which holds the model and the peers
scored on the same dev files in the same run). Nothing in a card is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.complexity import profile_model
from leanse.train.recipe import load_recipe

METRICS = ["si_sdri", "pesq", "stoi", "estoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]
TITLES = ["SI-SDRi", "PESQ-WB", "STOI", "ESTOI", "DNSMOS SIG", "DNSMOS BAK", "DNSMOS OVRL"]


def training_facts(run: Path) -> dict:
    """Epochs, steps, wall-clock minutes and best validation loss from the run's CSV log."""
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    valid = [(int(r["epoch"]), int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss")]
    best = min(valid, key=lambda v: v[2])
    facts = {"epochs": valid[-1][0] + 1, "steps": valid[-1][1] + 1, "best_epoch": best[0],
             "best_val_loss": round(best[2], 3)}
    timing = run / "logs" / "timing.json"
    if timing.is_file():
        facts.update(json.loads(timing.read_text()))
    return facts


def budget_lines(recipes: list[Path], minutes: list[float], stages: list[dict]) -> str:
    """One card line per training stage (recipe, loss, minutes, epochs, best validation loss)."""
    lines = []
    for recipe, spent, facts in zip(recipes, minutes, stages):
        loss = load_recipe(recipe).train.loss
        lines.append(f"  - `{recipe}` (loss `{loss}`): {spent:.0f} min, {facts['epochs']} epochs, {facts['steps']} steps; "
                     f"best validation loss {facts['best_val_loss']} at epoch {facts['best_epoch']}")
    return "\n".join(lines)


def table(rows: list[dict], key: str | None) -> str:
    header = ["system", *([key] if key else []), *TITLES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["system"], *([str(row[key])] if key else [])]
        cells += ["-" if row.get(m) is None else f"{row[m]:.3f}" if m in ("stoi", "estoi") else f"{row[m]:.2f}"
                  for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_rows(peers: list[dict]) -> str:
    """The peers' lines of the card's cost table (bench_real_dev.py's formatted columns)."""
    return "\n".join(f"| {r['system']} | {r.get('params') or '-'} | {r.get('MACs/s') or '-'} | {r.get('RTF') or '-'}"
                     f" | {r.get('latency ms') or '-'} ms (delay, measured) |"
                     for r in peers if r["system"] != "noisy input")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--bench", type=Path, required=True, help="output folder of bench_real_dev.py")
    parser.add_argument("--recipe", type=Path, nargs="+", required=True, help="the recipes, in training order")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--note", default="", help="a sentence for the dev-set section (e.g. where rows were reused from)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the checkpoint to bundle (default RUN/best); its folder name is its bench row")
    parser.add_argument("--minutes", type=float, nargs="+", required=True,
                        help="training wall-clock minutes of each recipe (from the logs)")
    args = parser.parse_args()
    if len(args.minutes) != len(args.recipe):
        sys.exit("give one --minutes value per --recipe")

    checkpoint = args.checkpoint or args.run / "best"
    model = load_checkpoint(checkpoint)
    results = json.loads((args.bench / "results.json").read_text())
    label = args.run.name if args.checkpoint is None else args.checkpoint.name
    mine = [r for r in results["overall"] if r["system"] == label]
    if not mine:
        sys.exit(f"{args.bench}/results.json has no row for {label}; run bench_real_dev.py on {checkpoint}")
    me = mine[0]
    peers = [r for r in results["overall"] if r["system"] in ("noisy input", "RNNoise", "DeepFilterNet3")]
    paper = profile_model(model, 1.0, convention="paper", rtf=False)
    stage_runs = [args.run.parent / load_recipe(recipe).name for recipe in args.recipe]
    stages = [training_facts(run) for run in stage_runs]
    facts = stages[-1]
    latency_ms = 1000 * model.config.get("n_fft", 0) / model.sample_rate

    dev = {m: round(me[m], 3) for m in METRICS if me.get(m) is not None}
    folder = Path("leanse/pretrained") / args.name
    if folder.exists():
        shutil.rmtree(folder)
    save_checkpoint(model, folder, meta={
        "summary": args.summary, "recipe": [str(r) for r in args.recipe], "dev_set": dev,
        "params": paper["params"], "macs_per_second": paper["macs_per_second"], "rtf_1_thread": me["RTF"],
        "training": stages, "training_minutes": sum(args.minutes),
    })

    by_snr = [r for r in results["by_snr"] if r["system"] in (label, "noisy input", "RNNoise", "DeepFilterNet3")]
    by_noise = [r for r in results["by_noise"] if r["system"] in (label, "noisy input", "RNNoise", "DeepFilterNet3")]
    for rows in (by_snr, by_noise):
        for row in rows:
            if row["system"] == label:
                row["system"] = args.name
    me = {**me, "system": args.name}
    limit = getattr(model, "attenuation_limit_db", None)
    limit_note = ("" if limit is None else
                  f"\nRun-time attenuation limit: {limit:g} dB (no bin is attenuated more; chosen on the dev set by"
                  f" `scripts/choose_attenuation_limit.py` as the strongest suppression that keeps every SNR bin's"
                  f" STOI and ESTOI at or above the noisy input's). `leanse enhance --atten-lim-db` overrides it.\n")
    licences = Path("data/real/LICENSES.md")
    card = f"""# {args.name}

{args.summary}. Rebuilt by `leanse data real --out data/real && {' && '.join(f'leanse train {r}' for r in args.recipe)}` (the
recipes say every setting); bundled by `scripts/bundle_model.py`. Use it with
`leanse enhance noisy.wav -o out/ --model {args.name}` (16 kHz mono; other rates are resampled).

## Cost
Measured in the same run as the dev-set table below (RTF at 1 thread; the peers' RTF includes their 16 <-> 48 kHz
resampling; DeepFilterNet3's parameters and MACs are counted from the ONNX graphs in its bundled model, RNNoise's
C library has no graph to count).

| system | params | MACs/s (thop convention) | RTF, 1 thread | algorithmic latency |
|---|---|---|---|---|
| {args.name} | {paper['params']:,} | {paper['macs_per_second'] / 1e6:.1f}M | {me['RTF']} | {latency_ms:.0f} ms (one STFT window) |
{cost_rows(peers)}
{limit_note}
## Real-speech dev set
{sum(r['n'] for r in results['by_snr'] if r['system'] == 'noisy input')} of the {len(list(Path('data/real/dev/noisy').glob('*.wav'))) or 300} fixed 4-s mixtures of held-out real voices (ktuberling, klettres) in held-out
noise (effects, music, babble, procedural), SNR -5..10 dB, a third reverberant; tuned on, never a
test set. All systems scored by `benchmarks/bench_real_dev.py` (peers delay-compensated). {args.note}

{table([*peers, me], None)}

By SNR bin (dB):

{table(by_snr, 'snr_bin')}

By noise type:

{table(by_noise, 'noise_type')}

## Training
- Data: real voices of the `train` split of `leanse data real` ({', '.join(['fillets-ng-data-cs', 'fillets-ng-data-nl', 'tuxpaint-stamps-default', 'gcin-voice'])}),
  noise: megaglest ambient and music, hedgewars music, real-voice babble of training voices, procedural noise;
  augmentation: speed, EQ, reverberation, band-limiting, level, clipping (`data.augment` of the recipe).
- Budget: {sum(args.minutes):.0f} min wall clock on a shared 2-core CPU machine, 1 torch thread, alongside other jobs:
{budget_lines(args.recipe, args.minutes, stages)}
- Licences of the training data (GPL-2, GPL-3/LGPL-3, CC-BY-3.0, CC-BY-SA-3.0; see below): whether they oblige
  anything for trained weights is unsettled; they are listed here so a user can decide.

{licences.read_text() if licences.is_file() else ''}
## Limitations
Trained on about 4.5 hours of game and educational-software voices (Czech, Dutch and a dozen languages
of single words), hours of CPU, not days of GPU: expect it to trail DeepFilterNet3, and read the
by-noise-type table before trusting it on music or effects. The dev set is this project's own (isolated
words and short phrases with pauses; babble made of the same kind of voices): the peers score lower on
it than on the independent real-speech check quoted in issue 10, mostly on babble, so compare systems
within this table, not across tables.
"""
    (folder / "CARD.md").write_text(card)
    print(f"bundled {args.name} into {folder} ({(folder / 'model.safetensors').stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
