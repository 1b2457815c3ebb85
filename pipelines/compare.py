"""`opinionrec compare`: ALBERT against its BERT equivalent on this machine, side by side.

BERT equivalent = same depth, width, heads, intermediate size and vocabulary, but every layer its
own weights and token embeddings of width H (`AlbertConfig.bert_equivalent`). In one run:

- parameters (total, embedding) of both for every named config, and for `--param-config` at the
  paper's 30000-token vocabulary (formulas checked against built models in tests/test_configs.py);
- on `--speed-config` at `--batch-size x --sequence-length`: checkpoint MB, peak RSS, training
  and inference tokens/s as an XLA-compiled and a plain graph `tf.function`, XLA compile time,
  and the XLA forward pass as a fraction of this machine's matmul peak;
- the training race on `--config`: both pretrain (MLM + SOP) on `<workspace>/pretraining_data`
  for the same `--minutes` of training, held-out MLM and SOP accuracy along the way;
- with `--bf16`, the same for ALBERT in mixed_bfloat16 (graph mode, oneDNN's bf16 path);
- with `--encoders` (default: when `opinionrec distill` has run), the workspace's distilled ALBERT
  student beside its BERT teacher: parameters, checkpoint MB, inference tokens/s (float32 graph
  and XLA, bf16) and peak RSS, with the finetune stage's held-out scores beside TF-IDF + LR
  (`encoders.json`, `encoders.md`).

Every variant runs in its own process (`albert_tf.comparison.run_isolated`). Writes
`compare.json`, `compare.md` and `compare.html` (plots embedded) to `--out`.
`benchmarks/albert_vs_bert.py` runs the same comparison into benchmarks/results/.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

PAPER_VOCABULARY = 30000
# Speed and XLA figures are measured at this shape unless --batch-size / --sequence-length say
# otherwise (the 32 x 128).
DEFAULT_BATCH = 32


@dataclasses.dataclass
class CompareOptions:
    """What `run_comparison` measures; the command's options (see `add_arguments`)."""

    pretraining_data: str
    config: str = "tiny"
    speed_config: str = "small"
    param_config: str = "base"
    minutes: float = 5.0
    batch_size: int = DEFAULT_BATCH
    sequence_length: int | None = None
    bf16: bool = True
    eval_every_s: float | None = None
    eval_instances: int = 2000
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    mask_rate: float = 0.15
    batching: str = "bucketed"
    race_xla: bool = True
    repeats: int = 5
    train_steps: int = 4
    peak_size: int = 2048
    seed: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser, stage=False)
    parser.add_argument("--config", default="tiny",
                        help="model size of the training race (default: %(default)s)")
    parser.add_argument("--speed-config", default="small",
                        help="model size of the speed, memory and checkpoint measurements "
                        "(default: %(default)s)")
    parser.add_argument("--param-config", default="base",
                        help=f"model size whose parameters are compared at the paper's "
                        f"{PAPER_VOCABULARY}-token vocabulary (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="training minutes per variant in the race, the same for each; "
                        "evaluation and compilation are not counted (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help="instances of --sequence-length per step, for the race (as token "
                        "budget of length-bucketed batches) and the speed runs "
                        "(default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=None,
                        help="tokens per instance (default: the pretraining data's)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure ALBERT in mixed_bfloat16, graph mode "
                        "(default: %(default)s)")
    parser.add_argument("--eval-every", type=float, default=None, metavar="SECONDS",
                        help="training seconds between held-out evaluations in the race "
                        "(default: a tenth of --minutes)")
    parser.add_argument("--eval-instances", type=int, default=2000,
                        help="held-out instances per evaluation (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="AdamW learning rate after warm-up, constant (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=100,
                        help="linear warm-up steps (default: %(default)s)")
    parser.add_argument("--mask-rate", type=float, default=0.15,
                        help="share of tokens masked in race training batches, as `opinionrec "
                        "pretrain --mask-rate` (held-out: always 0.15) (default: %(default)s)")
    parser.add_argument("--batching", choices=["bucketed", "padded"], default="bucketed",
                        help="race batches as `opinionrec pretrain --batching` "
                        "(default: %(default)s)")
    parser.add_argument("--race-xla", action=argparse.BooleanOptionalAction, default=True,
                        help="train the float32 race variants with XLA, as `opinionrec pretrain` "
                        "does (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed forward passes per speed measurement (median) "
                        "(default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=4,
                        help="timed training steps per speed measurement (median), after one "
                        "compiling step (default: %(default)s)")
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="matrix size of the matmul peak measurement (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, data order, masks")
    parser.add_argument("--encoders", action=argparse.BooleanOptionalAction, default=None,
                        help="compare the workspace's distilled ALBERT student with its BERT "
                        "teacher (size, speed, memory, held-out scores); default: when "
                        "`opinionrec distill` has run")
    parser.add_argument("--out", default=None,
                        help="output folder (default: <workspace>/compare)")


def options_from_args(args: argparse.Namespace, pretraining_data: str | Path) -> CompareOptions:
    """The command's options; every `CompareOptions` field but the data is an argument."""
    renamed = {"eval_every_s": "eval_every"}
    fields = [f.name for f in dataclasses.fields(CompareOptions) if f.name != "pretraining_data"]
    return CompareOptions(pretraining_data=str(pretraining_data),
                          **{f: getattr(args, renamed.get(f, f)) for f in fields})


def variants(options: CompareOptions) -> list[tuple[str, str, str]]:
    """(result key, backbone kind, dtype) of every variant measured."""
    out = [("albert", "albert", "float32"), ("bert", "bert", "float32")]
    return out + ([("bf16", "albert", "mixed_bfloat16")] if options.bf16 else [])


def estimated_minutes(options: CompareOptions) -> float:
    """A rough wall-clock estimate of `run_comparison` on 2 idle CPU cores: each race variant
    runs `minutes` plus ~2 minutes of loading, compiling and ten evaluations; each speed run ~2
    minutes per jit mode at `small` size (scaled by the speed config's FLOPs), plus a minute
    for the matmul peak."""
    from albert_tf.comparison import encoder_flops
    from albert_tf.configs import get_config

    races = len(variants(options)) * (options.minutes + 2.0)
    scale = (encoder_flops(get_config(options.speed_config), options.batch_size,
                           options.sequence_length or 128)
             / encoder_flops(get_config("small"), DEFAULT_BATCH, 128))
    modes = 2 + 2 + (1 if options.bf16 else 0)  # (graph, XLA) x 2 models + bf16 graph
    return races + modes * (0.5 + 1.5 * scale) + 1.0


def _params_entry(config) -> dict[str, Any]:
    from albert_tf.configs import albert_parameter_count, bert_parameter_count

    albert, bert = albert_parameter_count(config), bert_parameter_count(config)
    return {
        "vocabulary_size": config.vocabulary_size,
        "albert": albert,
        "bert": bert,
        "ratio": bert["total"] / albert["total"],
        "embedding_ratio": bert["embedding"] / albert["embedding"],
    }


def parameter_table(vocabulary_size: int, param_config: str = "base") -> dict[str, Any]:
    """Formula parameter counts: every named config at `vocabulary_size`, and `param_config` at
    the paper's vocabulary (key `<name>@30000`)."""
    from albert_tf.configs import CONFIGS, get_config

    table = {name: _params_entry(get_config(name, vocabulary_size=vocabulary_size))
             for name in CONFIGS}
    table[f"{param_config}@{PAPER_VOCABULARY}"] = _params_entry(
        get_config(param_config, vocabulary_size=PAPER_VOCABULARY))
    return table


def run_comparison(options: CompareOptions) -> dict[str, Any]:
    """Measure everything (each variant in its own process); the result `compare.json` holds."""
    from albert_tf.comparison import run_isolated
    from albert_tf.configs import get_config

    start = time.perf_counter()
    # schema.json read directly: this process never imports TensorFlow, only the variants do.
    schema = json.loads((Path(options.pretraining_data) / "schema.json").read_text())
    seq_len = options.sequence_length or schema["sequence_length"]
    vocabulary = schema["vocabulary_size"]
    batch = options.batch_size
    log.info("compare: race %s for %.2g min per variant, speed %s at %d x %d, %s; about %.0f "
             "minutes", options.config, options.minutes, options.speed_config, batch, seq_len,
             ", ".join(f"{kind} {dtype}" for _, kind, dtype in variants(options)),
             estimated_minutes(options))

    by_config = parameter_table(vocabulary, options.param_config)
    paper = by_config[f"{options.param_config}@{PAPER_VOCABULARY}"]
    log.info("compare: %s at V=%d: ALBERT %.2fM, BERT %.2fM parameters (x%.1f)",
             options.param_config, PAPER_VOCABULARY, paper["albert"]["total"] / 1e6,
             paper["bert"]["total"] / 1e6, paper["ratio"])

    log.info("compare: matmul peak (%dx%d fp32)", options.peak_size, options.peak_size)
    peak = run_isolated("peak", size=options.peak_size, repeats=options.repeats)
    log.info("compare: matmul peak %.1f GFLOP/s", peak["flops"] / 1e9)

    speed_config = get_config(options.speed_config, vocabulary_size=vocabulary)
    speed_config = speed_config.replace(
        max_sequence_length=max(speed_config.max_sequence_length, seq_len))
    race_config = get_config(options.config, vocabulary_size=vocabulary)
    speeds, races = {}, {}
    for key, kind, dtype in variants(options):
        log.info("compare: speed of %s %s (%s)", kind, dtype, options.speed_config)
        speeds[key] = run_isolated(
            "speed", kind=kind, config=speed_config, batch=batch, seq_len=seq_len, dtype=dtype,
            jit_modes=[False, True] if dtype == "float32" else [False],
            repeats=options.repeats, train_steps=options.train_steps, seed=options.seed)
    for key, kind, dtype in variants(options):
        log.info("compare: training race, %s %s (%s), %.2g min", kind, dtype, options.config,
                 options.minutes)
        races[key] = run_isolated(
            "pretrain", backbone_kind=kind, config=race_config,
            instances_dir=options.pretraining_data, minutes=options.minutes, batch_size=batch,
            sequence_length=seq_len, dtype=dtype, eval_every_s=options.eval_every_s,
            eval_instances=options.eval_instances, learning_rate=options.learning_rate,
            warmup_steps=options.warmup_steps, mask_rate=options.mask_rate,
            batching=options.batching, seed=options.seed,
            jit_compile=None if options.race_xla else False)

    result = assemble_result(options, seq_len, vocabulary, speed_config, peak, speeds, races)
    result["wall_minutes"] = (time.perf_counter() - start) / 60
    log.info("compare: done in %.1f min", result["wall_minutes"])
    return result


def assemble_result(options: CompareOptions, seq_len: int, vocabulary: int, speed_config,
                    peak: dict, speeds: dict, races: dict) -> dict[str, Any]:
    """`compare.json` from the measurements: `peak` of `matmul_peak_flops`, and per variant key
    ("albert", "bert", "bf16") the `speed_profile` and `pretrain_for` results."""
    from albert_tf.comparison import encoder_flops
    from albert_tf.configs import albert_parameter_count, bert_parameter_count

    by_config = parameter_table(vocabulary, options.param_config)
    paper = by_config[f"{options.param_config}@{PAPER_VOCABULARY}"]

    def model_section(key: str, kind: str) -> dict[str, Any]:
        speed, race = speeds[key], races[key]
        inference, training = speed["inference"], speed["training"]
        section = {
            "mlm_accuracy": race["mlm_accuracy"],
            "sop_accuracy": race["sop_accuracy"],
            "train_tokens_per_s": training.get("xla", training["graph"])["tokens_per_s"],
            "train_tokens_per_s_graph": training["graph"]["tokens_per_s"],
            "infer_tokens_per_s_graph": inference["graph"]["tokens_per_s"],
            "checkpoint_mb": speed["checkpoint_mb"],
            "peak_rss_mb": speed["peak_rss_mb"],
            "race_peak_rss_mb": race["peak_rss_mb"],
            "race_steps": race["steps"],
            "race_tokens_per_s": race["tokens_per_s"],
            "race_compile_s": race["compile_seconds"],
            "params_speed_config": speed["params"],
            "params_race_config": race["params"],
            "curve": race["curve"],
        }
        if "xla" in inference:
            section.update({
                "infer_tokens_per_s_xla": inference["xla"]["tokens_per_s"],
                "compile_s": inference["xla"]["compile_s"],
                "train_compile_s": training["xla"]["compile_s"],
                "train_tokens_per_s_xla": training["xla"]["tokens_per_s"],
            })
        flops = encoder_flops(speed_config, options.batch_size, seq_len, kind)
        section["peak_fraction"] = {mode: flops / m["median_s"] / peak["flops"]
                                    for mode, m in inference.items()}
        return section

    result: dict[str, Any] = {
        "options": dataclasses.asdict(options),
        "sequence_length": seq_len,
        "vocabulary_size": vocabulary,
        "configs": {"race": options.config, "speed": options.speed_config,
                    "params": options.param_config},
        "params": {"config": options.param_config, **paper},
        "params_by_config": by_config,
        "matmul_peak_gflops": peak["flops"] / 1e9,
        "matmul_peak": peak,
        "albert": model_section("albert", "albert"),
        "bert": model_section("bert", "bert"),
        "speed_runs": speeds,
        "race_runs": races,
    }
    albert = result["albert"]
    result["xla_speedup"] = {
        "inference": albert["infer_tokens_per_s_xla"] / albert["infer_tokens_per_s_graph"],
        "training": albert["train_tokens_per_s_xla"] / albert["train_tokens_per_s_graph"],
        "bert_inference": (result["bert"]["infer_tokens_per_s_xla"]
                           / result["bert"]["infer_tokens_per_s_graph"]),
        "bert_training": (result["bert"]["train_tokens_per_s_xla"]
                          / result["bert"]["train_tokens_per_s_graph"]),
    }
    result["xla_peak_fraction"] = albert["peak_fraction"]["xla"]
    if options.bf16:
        bf16 = model_section("bf16", "albert")
        result["bf16"] = {
            "infer_tokens_per_s": bf16["infer_tokens_per_s_graph"],
            "train_tokens_per_s": bf16["train_tokens_per_s_graph"],
            "mlm_accuracy": bf16["mlm_accuracy"],
            "sop_accuracy": bf16["sop_accuracy"],
            "speedup_vs_fp32_xla": bf16["infer_tokens_per_s_graph"]
            / albert["infer_tokens_per_s_xla"],
            "train_speedup_vs_fp32_xla": bf16["train_tokens_per_s_graph"]
            / albert["train_tokens_per_s_xla"],
            **{k: v for k, v in bf16.items() if k not in ("mlm_accuracy", "sop_accuracy")},
        }
    for kind, count in (("albert", albert_parameter_count), ("bert", bert_parameter_count)):
        built, formula = result[kind]["params_speed_config"], count(speed_config)["total"]
        if built != formula:
            log.warning("compare: built %s %s has %d parameters, the formula says %d", kind,
                        options.speed_config, built, formula)
    return result


# === Reports ===


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def summary_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The side-by-side table: one row per measurement, a column per variant."""
    a, b, bf = result["albert"], result["bert"], result.get("bf16")
    configs, params = result["configs"], result["params"]
    v = result["vocabulary_size"]
    minutes = result["options"]["minutes"]
    headers = ["", "ALBERT", "BERT"] + (["ALBERT bf16"] if bf else [])

    def row(label: str, key: str | None = None, albert=None, bert=None, bf16=None):
        values = [a.get(key), b.get(key), bf.get(key) if bf else None] if key else \
            [albert, bert, bf16]
        return [label, *values[: len(headers) - 1]]

    speed = f"{configs['speed']}, {result['options']['batch_size']}x{result['sequence_length']}"
    race = f"{configs['race']}, {minutes:g} min"
    rows = [
        row(f"parameters ({params['config']}, V={params['vocabulary_size']})",
            albert=params["albert"]["total"], bert=params["bert"]["total"]),
        row(f"embedding parameters ({params['config']}, V={params['vocabulary_size']})",
            albert=params["albert"]["embedding"], bert=params["bert"]["embedding"]),
        row(f"parameters ({configs['speed']}, V={v}, built)", "params_speed_config"),
        row(f"checkpoint MB ({configs['speed']})", "checkpoint_mb"),
        row(f"peak RSS MB (speed runs, {configs['speed']})", "peak_rss_mb"),
        row(f"peak RSS MB (training race, {configs['race']})", "race_peak_rss_mb"),
        row(f"training tokens/s, XLA ({speed})", "train_tokens_per_s_xla"),
        row(f"training tokens/s, graph ({speed})", "train_tokens_per_s_graph"),
        row(f"inference tokens/s, XLA ({speed})", "infer_tokens_per_s_xla"),
        row(f"inference tokens/s, graph ({speed})", "infer_tokens_per_s_graph"),
        row("XLA compile s, inference", "compile_s"),
        row("XLA compile s, training step", "train_compile_s"),
        row(f"held-out MLM accuracy ({race})", "mlm_accuracy"),
        row(f"held-out SOP accuracy ({race})", "sop_accuracy"),
        row(f"training steps ({race})", "race_steps"),
        row(f"race training tokens/s, real tokens ({configs['race']})", "race_tokens_per_s"),
    ]
    return headers, rows


def _markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def params_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["config", "V", "ALBERT total", "ALBERT embedding", "BERT total",
               "BERT embedding", "BERT / ALBERT"]
    rows = [[name, e["vocabulary_size"], e["albert"]["total"], e["albert"]["embedding"],
             e["bert"]["total"], e["bert"]["embedding"], e["ratio"]]
            for name, e in result["params_by_config"].items()]
    return headers, rows


def findings(result: dict[str, Any]) -> list[str]:
    """The headline numbers in sentences."""
    p, x = result["params"], result["xla_speedup"]
    lines = [
        f"{p['config']} at V={p['vocabulary_size']}: ALBERT {p['albert']['total'] / 1e6:.2f}M "
        f"vs BERT {p['bert']['total'] / 1e6:.2f}M parameters ({p['ratio']:.1f}x); embeddings "
        f"{p['albert']['embedding'] / 1e6:.2f}M vs {p['bert']['embedding'] / 1e6:.2f}M.",
        f"XLA vs plain tf.function graph ({result['configs']['speed']}): inference "
        f"{x['inference']:.2f}x, training {x['training']:.2f}x (ALBERT); BERT "
        f"{x['bert_inference']:.2f}x and {x['bert_training']:.2f}x.",
        f"Matmul peak {result['matmul_peak_gflops']:.1f} GFLOP/s "
        f"({result['matmul_peak']['method']}); ALBERT's XLA forward pass reaches "
        f"{100 * result['xla_peak_fraction']:.0f}% of it.",
    ]
    if "bf16" in result:
        bf = result["bf16"]
        lines.append(
            f"ALBERT mixed_bfloat16 (graph): inference {bf['speedup_vs_fp32_xla']:.2f}x and "
            f"training {bf['train_speedup_vs_fp32_xla']:.2f}x the fp32 XLA speed; held-out MLM "
            f"{bf['mlm_accuracy']:.3f} vs {result['albert']['mlm_accuracy']:.3f} in fp32.")
    return lines


def markdown_report(result: dict[str, Any]) -> str:
    """compare.md: the side-by-side table, the parameter table and the headline numbers."""
    parts = [_markdown_table(*summary_rows(result)), "",
             *[f"- {line}" for line in findings(result)], "",
             "Parameters by config (formulas, checked against built models):", "",
             _markdown_table(*params_rows(result))]
    return "\n".join(parts)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(result: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: learning curves (MLM, SOP vs minutes) and throughput bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"albert": "ALBERT", "bert": "BERT", "bf16": "ALBERT bf16"}
    present = [k for k in labels if k in result]
    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, index, name in ((axes[0], 2, "MLM"), (axes[1], 3, "SOP")):
        for key in present:
            curve = result[key]["curve"]
            values = [float("nan") if c[index] is None else c[index] for c in curve]
            axis.plot([c[0] / 60 for c in curve], values, marker="o",
                      markersize=3, label=labels[key])
        axis.set_xlabel("training minutes")
        axis.set_ylabel(f"held-out {name} accuracy")
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"Learning in the same budget ({result['configs']['race']})")
    out["curves"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    modes = [("xla", "XLA"), ("graph", "graph")]
    for axis, what in ((axes[0], "train"), (axes[1], "infer")):
        width = 0.8 / len(present)
        for i, key in enumerate(present):
            values = [result[key].get(f"{what}_tokens_per_s_{mode}") or 0 for mode, _ in modes]
            axis.bar([j + i * width for j in range(len(modes))], values, width,
                     label=labels[key])
        axis.set_xticks([j + width * (len(present) - 1) / 2 for j in range(len(modes))],
                        [name for _, name in modes])
        axis.set_ylabel("tokens/s")
        axis.set_title("training" if what == "train" else "inference")
        axis.legend()
    fig.suptitle(f"Throughput ({result['configs']['speed']}, {result['options']['batch_size']}"
                 f"x{result['sequence_length']})")
    out["throughput"] = _png(fig)
    plt.close(fig)
    return out


def _html_table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(result: dict[str, Any], title: str = "ALBERT vs BERT") -> str:
    """compare.html: one self-contained page (tables, findings, PNG plots inlined)."""
    images = plots(result)
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in findings(result))
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{_html_table(*summary_rows(result))}<ul>{items}</ul>"
        f"<img alt='learning curves' src='data:image/png;base64,{images['curves']}'>"
        f"<img alt='throughput' src='data:image/png;base64,{images['throughput']}'>"
        f"<h2>Parameters by config</h2>{_html_table(*params_rows(result))}"
        "</body></html>\n"
    )


def write_reports(result: dict[str, Any], out_dir: str | Path, name: str = "compare"
                  ) -> dict[str, Path]:
    """`<out_dir>/<name>.json`, `.md` and `.html`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "html")}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["md"].write_text(f"# ALBERT vs BERT\n\n{markdown_report(result)}\n")
    paths["html"].write_text(html_report(result))
    return paths


# === The distilled student beside its teacher ===


def encoder_rows(profiles: dict[str, dict], teacher: dict | None
                 ) -> tuple[list[str], list[list[str]]]:
    """One row per encoder profile (`albert_tf.comparison.encoder_profile`), titled by its key."""
    headers = ["encoder", "parameters", "fewer than teacher", "checkpoint MB", "tokens/s fp32",
               "tokens/s fp32 XLA", "tokens/s bf16", "peak RSS MB"]
    rows = []
    for title, p in profiles.items():
        speed = p["tokens_per_s"]
        rows.append([title, f"{p['params'] / 1e6:.1f}M",
                     f"{teacher['params'] / p['params']:.1f}x" if teacher else "—",
                     f"{p['checkpoint_mb']:.0f}", f"{speed['float32_graph']:,.0f}",
                     f"{speed['float32_xla']:,.0f}", f"{speed['bf16_graph']:,.0f}",
                     f"{p['peak_rss_mb']:,.0f}"])
    return headers, rows


def teacher_of(ws: ws_lib.Workspace) -> str:
    """The teacher the workspace's student was distilled from (its distill metrics say)."""
    metrics = ws.stage_dir("distill") / "metrics.json"
    if metrics.exists():
        return json.loads(metrics.read_text())["teacher"]
    from albert_tf.distillation import minilm_folder

    return str(minilm_folder())


def held_out_scores(ws: ws_lib.Workspace) -> dict[str, Any]:
    """The finetune stage's held-out scores per head, with the encoder they were measured on."""
    record = ws_lib.read_stage_record(ws, "finetune") or {}
    metrics = ws.stage_dir("finetune") / "metrics.json"
    if not metrics.exists():
        return {}
    return {"encoder": (record.get("params") or {}).get("encoder"),
            "heads": json.loads(metrics.read_text())}


def compare_encoders(ws: ws_lib.Workspace, batch: int, seq_len: int, repeats: int
                     ) -> dict[str, Any]:
    """The student and the teacher profiled side by side, each in its own processes."""
    from albert_tf.comparison import encoder_profile

    profiles = {"teacher": encoder_profile(teacher_of(ws), batch, seq_len, repeats),
                "student": encoder_profile(ws.student_preset, batch, seq_len, repeats)}
    return {"batch": batch, "sequence_length": seq_len, "profiles": profiles,
            "held_out": held_out_scores(ws)}


def encoders_markdown(result: dict[str, Any]) -> str:
    """encoders.md: the size and speed table, then the held-out scores of the finetune stage."""
    profiles = result["profiles"]
    titles = {"teacher": f"teacher ({profiles['teacher']['class']})",
              "student": f"ALBERT student ({profiles['student']['class']})"}
    lines = [f"Inference at {result['batch']} x {result['sequence_length']} tokens, one process "
             "per encoder and dtype.", "",
             _markdown_table(*encoder_rows({titles[k]: p for k, p in profiles.items()},
                                           profiles["teacher"]))]
    held_out = result["held_out"]
    if held_out.get("heads"):
        lines += ["", f"Held-out scores of the finetune stage (encoder: "
                  f"{held_out['encoder'] or 'n/a'}), beside TF-IDF + LR on the same documents:", ""]
        rows = [[head, scores["albert"]["accuracy"], scores["tfidf_lr"]["accuracy"],
                 scores["albert"]["macro_f1"], scores["tfidf_lr"]["macro_f1"]]
                for head, scores in held_out["heads"].items()]
        lines.append(_markdown_table(["head", "accuracy", "TF-IDF + LR accuracy", "macro-F1",
                                      "TF-IDF + LR macro-F1"], rows))
    return "\n".join(lines)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    out = Path(args.out or ws.root / "compare")
    has_student = (ws.student_preset / "config.json").exists()
    encoders = has_student if args.encoders is None else args.encoders
    if encoders and not has_student:
        raise SystemExit(f"compare: --encoders needs a distilled student in "
                         f"{ws.student_preset}; run `opinionrec distill` first")
    data = ws.pretraining_data
    if not (data / "schema.json").exists() and not encoders:
        raise SystemExit(f"compare: no pretraining instances in {data} and no distilled "
                         "student; run `opinionrec pretraining-data` or `opinionrec distill` "
                         "first")
    if encoders:
        result = compare_encoders(ws, args.batch_size, args.sequence_length or 128, args.repeats)
        out.mkdir(parents=True, exist_ok=True)
        (out / "encoders.json").write_text(json.dumps(result, indent=2) + "\n")
        text = encoders_markdown(result)
        (out / "encoders.md").write_text(f"# The ALBERT student vs its BERT teacher\n\n{text}\n")
        print(text)
        log.info("compare: wrote %s", out / "encoders.md")
    if not (data / "schema.json").exists():
        return 0
    options = options_from_args(args, data)
    if not 0 < options.mask_rate < 1:
        raise SystemExit(f"compare: --mask-rate must be in (0, 1), not {options.mask_rate}")
    result = run_comparison(options)
    paths = write_reports(result, out)
    print(markdown_report(result))
    log.info("compare: wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0
