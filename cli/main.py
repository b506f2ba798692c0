"""`ulmfit` command line: one thin function a command over ulmfit.phases.

Exit codes: 0 success, 2 bad usage or bad input (one clear line on stderr), 1 anything else.
Logs and progress go to stderr, results to stdout (so `ulmfit predict ... | jq` works).
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

from ulmfit import __version__
from ulmfit.errors import Interrupted, UlmfitError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
    help="ULMFiT-style transfer learning: pretrain / fine-tune an LM, train and use a classifier.\n\n"
         "Every option is a config field: give a recipe with --config and override any field with "
         "--set key.sub=value (e.g. --set train.epochs=3).",
)

CONFIG = typer.Option(None, "--config", "-c", help="YAML recipe (configs/*.yaml); its section for this phase is used.")
SET = typer.Option(None, "--set", "-s", help="Override a config field, e.g. --set train.lr=0.01 (repeatable).")
OUT = typer.Option(None, "--out", "-o", help="Output folder (default: the config's `out`).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or per-epoch logs.")
DEVICE = typer.Option("auto", help="Where the model runs: auto (the GPU when there is one, else the CPU), "
                                   "cpu, cuda or cuda:N.")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint.")
FORCE = typer.Option(False, "--force", help="Replace a finished run in the output folder (it is kept until the new "
                                            "one finishes).")
NO_VERIFY = typer.Option(False, "--no-verify", help="Load weight / tokenizer files even when they changed since the "
                                                    "run wrote them (hand-edited files).")


def _fields_epilog(phase: str) -> str:
    from ulmfit.phases.config import PHASES, fields_help

    rows = fields_help(PHASES[phase])
    return "\b\nConfig fields (--set key=value; defaults shown, a recipe's section overrides them):\n" + \
        "\n".join("  " + r for r in rows)


def _version(value: bool):
    if value:
        typer.echo(f"ulmfit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _emit(result: dict) -> None:
    typer.echo(json.dumps(result, indent=None, default=str))


@app.command(epilog=_fields_epilog("pretrain"))
def pretrain(config: Optional[str] = CONFIG, set_: Optional[List[str]] = SET, out: Optional[str] = OUT,
             quiet: bool = QUIET, resume: bool = RESUME, force: bool = FORCE):
    """Phase 1: train an AWD-LSTM language model from scratch on a corpus (default WikiText-2)."""
    from ulmfit import phases

    cfg = phases.phase_config("pretrain", config, set_, out)
    _emit(phases.pretrain(cfg, quiet=quiet, resume=resume, force=force))


@app.command("finetune-lm", epilog=_fields_epilog("finetune_lm"))
def finetune_lm(config: Optional[str] = CONFIG, set_: Optional[List[str]] = SET, out: Optional[str] = OUT,
                pretrained: Optional[str] = typer.Option(None, help="Pretrained LM folder (or fastai .pth)."),
                quiet: bool = QUIET, resume: bool = RESUME, force: bool = FORCE):
    """Phase 2: fine-tune a pretrained LM on the target domain's texts (discriminative LRs, STLR)."""
    from ulmfit import phases

    extra = [f"pretrained={pretrained}"] if pretrained else []
    cfg = phases.phase_config("finetune_lm", config, list(set_ or []) + extra, out)
    _emit(phases.finetune_lm(cfg, quiet=quiet, resume=resume, force=force))


@app.command("train-classifier", epilog=_fields_epilog("classifier"))
def train_classifier(config: Optional[str] = CONFIG, set_: Optional[List[str]] = SET, out: Optional[str] = OUT,
                     encoder: Optional[str] = typer.Option(None, help="Fine-tuned LM folder (omit: random encoder)."),
                     quiet: bool = QUIET, resume: bool = RESUME, force: bool = FORCE):
    """Phase 3: train a text classifier with gradual unfreezing; evaluates on the test file if given.

    AWD-LSTM classifiers read at most the last `max_tokens` tokens of a text (default
    max_len + 10 chunks = 2,160; what comes before no longer changes the pooled features): a very
    long document costs what a long review costs. Transformers classifiers read the first `max_length` tokens."""
    from ulmfit import phases

    extra = [f"encoder={encoder}"] if encoder else []
    cfg = phases.phase_config("classifier", config, list(set_ or []) + extra, out)
    _emit(phases.train_classifier(cfg, quiet=quiet, resume=resume, force=force))


@app.command("lr-find")
def lr_find(phase: str = typer.Argument("classifier", help="Which phase's set-up to sweep: pretrain, finetune_lm or classifier."),
            config: Optional[str] = CONFIG, set_: Optional[List[str]] = SET, out: Optional[str] = OUT,
            start_lr: float = typer.Option(1e-7, help="First LR of the sweep."),
            end_lr: float = typer.Option(10.0, help="Last LR of the sweep."),
            num_it: int = typer.Option(100, min=2, help="Steps in the sweep."),
            quiet: bool = QUIET):
    """LR range test: sweep the LR exponentially, write lr_find.json and lr_find.png, print suggestions."""
    from ulmfit import phases

    phase = phase.replace("-", "_")
    if phase not in ("pretrain", "finetune_lm", "classifier"):
        raise UlmfitError(f"lr-find phase must be pretrain, finetune_lm or classifier, got {phase!r}")
    cfg = phases.phase_config(phase, config, set_, out)
    res = phases.lr_find(phase, cfg, start_lr=start_lr, end_lr=end_lr, num_it=num_it, quiet=quiet)
    _emit({"suggested_lr": res.suggestion, **{f"lr_{k}": v for k, v in res.suggestions.items()}})


@app.command()
def evaluate(model: str = typer.Argument(..., help="A classifier folder (train-classifier's output) or an LM folder."),
             data: str = typer.Argument(..., help="Labelled file to evaluate on (csv, tsv, jsonl, parquet...)."),
             text_col: Optional[List[str]] = typer.Option(None, help="Text column(s) (default: the training ones)."),
             label_col: Optional[str] = typer.Option(None, help="Label column (default: the training one)."),
             out: Optional[str] = OUT, bs: int = typer.Option(64, min=1, help="Batch size."),
             device: str = DEVICE, no_verify: bool = NO_VERIFY):
    """Evaluate a classifier on a labelled file (accuracy, macro-F1, report, confusion matrix), or a
    language model on any text file (perplexity).

    AWD-LSTM classifiers read at most the last `max_tokens` tokens of a text (default
    max_len + 10 chunks = 2,160; what comes before no longer changes the pooled features): a very
    long document costs what a long review costs. Transformers classifiers read the first `max_length` tokens."""
    from ulmfit import phases

    _emit(phases.evaluate(model, data, text_cols=text_col, label_col=label_col, out=out, bs=bs, device=device,
                          verify=not no_verify))


@app.command()
def predict(model: str = typer.Argument(..., help="A classifier folder."),
            texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify (or use --file, or stdin)."),
            file: Optional[str] = typer.Option(None, "--file", "-f", help="A file of texts (one per line, or a table)."),
            text_col: Optional[List[str]] = typer.Option(None, help="Text column(s) when --file is a table."),
            top_k: int = typer.Option(1, min=1, help="How many labels with probabilities to return per text."),
            fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
            bs: int = typer.Option(64, min=1, help="Batch size."),
            precision: str = typer.Option("auto", help="fp32; int8 (AWD-LSTM classifiers on the CPU: int8 LSTM "
                                          "weights: ~1.5x faster, same TREC-6 accuracy, probabilities within a few hundredths); bf16 "
                                          "(AWD-LSTM classifiers under bf16 autocast: fastest on long documents on CPUs with AVX512-BF16 or AMX); auto: "
                                          "for an AWD-LSTM classifier on the CPU bf16 where the CPU has bf16 instructions, else int8, "
                                          "else fp32."),
            device: str = DEVICE, no_verify: bool = NO_VERIFY):
    """Classify texts; prints one JSON line (or CSV row) per text, in input order.

    AWD-LSTM classifiers read at most the last `max_tokens` tokens of a text (default
    max_len + 10 chunks = 2,160; what comes before no longer changes the pooled features): a very
    long document costs what a long review costs. Transformers classifiers read the first `max_length` tokens."""
    from ulmfit import phases

    if not texts and not file:
        if sys.stdin.isatty():
            raise UlmfitError("give texts as arguments, --file FILE, or pipe them on stdin")
        texts = [line.rstrip("\n") for line in sys.stdin]  # blank lines get an empty row: output N = input N
    phases.predict_cli(model, texts=texts, file=file, text_cols=text_col, top_k=top_k, fmt=fmt, bs=bs, device=device,
                       verify=not no_verify, precision=precision)


@app.command()
def generate(model: str = typer.Argument(..., help="A language-model folder (pretrain / finetune-lm output)."),
             prompt: str = typer.Argument("", help="Text to continue."),
             n_words: int = typer.Option(40, "--n", min=0, help="Tokens to generate."),
             temperature: float = typer.Option(1.0, help="Sampling temperature (0 = greedy)."),
             seed: int = typer.Option(42, help="Random seed.")):
    """Continue a prompt with a trained language model (a quick sanity check)."""
    from ulmfit import phases

    typer.echo(phases.generate(model, prompt, n_words=n_words, temperature=temperature, seed=seed))


@app.command()
def run(config: str = typer.Argument(..., help="A recipe with pretrain / finetune_lm / classifier sections."),
        set_: Optional[List[str]] = SET, out: Optional[str] = OUT,
        force: bool = typer.Option(False, "--force", help="Re-run phases whose output already exists."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted phase from its last "
                                    "checkpoint (after an epoch, or inside one every train.checkpoint_minutes)."),
        quiet: bool = QUIET):
    """Run every phase of a recipe in order, skipping phases whose output already exists."""
    from ulmfit import phases

    cfg = phases.recipe_config(config, set_, out)
    _emit(phases.run_recipe(cfg, force=force, quiet=quiet, resume=resume))


@app.command()
def ensemble(out: str = typer.Argument(..., help="Folder to write the ensemble to (new, empty, or an ensemble with --force)."),
             members: List[str] = typer.Argument(..., help="Two or more classifier folders over the same classes."),
             test: Optional[str] = typer.Option(None, "--test", help="A labelled file to evaluate the ensemble on "
                                                "(metrics also written to the ensemble folder)."),
             text_col: Optional[List[str]] = typer.Option(None, help="Text column(s) of --test (default: the training ones)."),
             label_col: Optional[str] = typer.Option(None, help="Label column of --test (default: the training one)."),
             force: bool = typer.Option(False, "--force", help="Replace an ensemble already in the folder."),
             no_verify: bool = NO_VERIFY):
    """Average classifiers trained on the same classes (e.g. a forward and a backward one, or students
    from different starting points): `predict` and `evaluate` then read the folder as one classifier.

    The folder lists its members by relative path; it holds no weights of its own."""
    from ulmfit.phases.ensemble import make_ensemble

    if (text_col or label_col) and not test:
        raise UlmfitError("--text-col / --label-col name the columns of --test: give --test FILE too")
    _emit(make_ensemble(out, members, force=force, test=test, text_cols=text_col, label_col=label_col,
                        verify=not no_verify))


@app.command()
def export(run_dir: str = typer.Argument(..., help="A run folder (ulmfit run --out) or a classifier / LM output folder."),
           out: str = typer.Option(..., "--out", "-o", help="Folder to write the Hugging Face Hub export to."),
           onnx: bool = typer.Option(False, "--onnx", help="Also write model.onnx (classifiers only; needs the onnx extra).")):
    """Export a trained model as a Hub folder transformers can load (trust_remote_code), with a model card."""
    from ulmfit.hub import export_run

    _emit(export_run(run_dir, out, onnx=onnx))


@app.command()
def push(hub_dir: str = typer.Argument(..., help="A folder written by `ulmfit export`."),
         repo: str = typer.Option(..., "--repo", help="Hub repository user/name (created if needed)."),
         private: bool = typer.Option(False, "--private", help="Create the repository as private."),
         token: Optional[str] = typer.Option(None, "--token", envvar="HF_TOKEN",
                                             help="Hub token (default: HF_TOKEN or `huggingface-cli login`).")):
    """Upload an exported folder to the Hugging Face Hub."""
    from ulmfit import hub

    _emit({"repo": repo, "url": hub.push(hub_dir, repo, token=token, private=private)})


@app.command()
def compare(config: str = typer.Option(..., "--config", "-c", help="A text recipe (pretrain / finetune_lm / classifier sections) "
                                       "or a vision recipe (modality: image, configs/vision-digits.yaml); an optional `compare` section."),
            strategies: Optional[str] = typer.Option(None, help="Comma-separated: gradual, full, chain_thaw, head_only, "
                                                     "no_pretraining; text: no_lm_finetuning, lm_no_discriminative, lm_no_stlr, "
                                                     "one_cycle, stlr, or a name defined under compare.overrides; vision: "
                                                     "precomputed_head, fastai."),
            seeds: Optional[str] = typer.Option(None, help="How many seeds (3 = seeds 0, 1, 2) or a list (1,7,42)."),
            train_sizes: Optional[str] = typer.Option(None, "--train-sizes", help="Low-shot: labelled examples per run "
                                                      "(text: in all, e.g. 50,100,all, or per class, e.g. 8pc,16pc) "
                                                      "or per class (vision, e.g. 10,50)."),
            ablations: Optional[str] = typer.Option(None, help="Extra strategies appended to --strategies (ablations)."),
            set_: Optional[List[str]] = SET, out: Optional[str] = OUT, quiet: bool = QUIET):
    """Compare fine-tuning strategies and ablations over seeds (and labelled-set sizes): results.csv, summary.md, plots."""
    from ulmfit.compare import compare as run_compare

    _emit(run_compare(config, strategies, seeds, out, train_sizes=train_sizes, ablations=ablations,
                      overrides=set_, quiet=quiet))


@app.command("train-vision")
def train_vision(config: str = typer.Option("configs/vision-digits.yaml", "--config", "-c",
                                            help="A vision recipe (configs/vision-digits.yaml)."),
                 out: str = typer.Option("runs/vision-digits", "--out", "-o", help="Output folder."),
                 methods: Optional[List[str]] = typer.Option(None, "--method", help="Only these methods (repeatable): "
                                                              "scratch, head_only, full, gradual, chain_thaw, fastai."),
                 per_class: Optional[List[int]] = typer.Option(None, "--per-class", help="Labelled images per class (repeatable)."),
                 threads: int = typer.Option(1, help="torch CPU threads.")):
    """Image transfer on the same core: pretrain a ResNet on MNIST-5k, transfer to digits with few labels
    per class, compare strategies (accuracy with and without TTA). Needs the `vision` extra."""
    try:
        from ulmfit.phases.vision import run_transfer
    except ImportError as e:
        raise UlmfitError(f"train-vision needs torchvision: pip install 'ulmfit[vision]' ({e})") from None
    _emit(run_transfer(config, out, threads, methods, per_class))


def _is_usage_error(e: BaseException) -> bool:
    """A click usage error, from click itself or the copy of click that newer typer releases carry."""
    return any(c.__name__ in ("UsageError", "BadParameter", "NoSuchOption", "MissingParameter", "BadOptionUsage",
                              "BadArgumentUsage", "NoArgsIsHelpError")
               for c in type(e).__mro__) and callable(getattr(e, "show", None))


_STOPPED = {"by": None}


def _on_sigterm(signum, frame):
    """``kill`` (or a scheduler taking the machine back) stops a run as Ctrl-C does: at its last
    checkpoint, with the line that says how to resume; exit code 143 (128 + SIGTERM)."""
    _STOPPED["by"] = "SIGTERM"
    raise KeyboardInterrupt


def _interrupted_code() -> int:
    return 143 if _STOPPED["by"] == "SIGTERM" else 130


def main(argv: list[str] | None = None) -> int:
    """Console entry point; maps errors to exit codes: 2 bad usage or input, 130 interrupted (143 on
    SIGTERM), 1 a bug."""
    import signal
    import threading

    _STOPPED["by"] = None
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _main(argv)
    finally:
        if main_thread:  # None: a handler not set from Python; the default is the nearest
            signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
    try:
        code = app(args=argv, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return _interrupted_code()
    except UlmfitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return _interrupted_code()
    except Exception as e:  # noqa: BLE001
        if _is_usage_error(e):
            e.show()
            return 2
        if type(e).__name__ == "Abort":  # click's Ctrl-C (its own or typer's copy of click)
            print("interrupted", file=sys.stderr)
            return _interrupted_code()
        if type(e).__name__ == "Exit":  # typer.Exit raised outside click's handling
            return int(getattr(e, "exit_code", 0) or 0)
        import traceback

        traceback.print_exc()
        print(f"error: unexpected failure ({type(e).__name__}: {e}); this is a bug, please report it",
              file=sys.stderr)
        return 1


def entry() -> None:
    try:
        code = main()
    finally:
        if "torch" in sys.modules:  # a phase ran: under torchrun, leave the process group cleanly
            from ulmfit.core.accel import shutdown_distributed

            shutdown_distributed()
    sys.exit(code)


if __name__ == "__main__":
    entry()
