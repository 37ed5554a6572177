"""The command line of DESIGN.md: `python -m bloodcell <command>`.

Exit status 0 on success, 2 on bad input (an unusable image, a missing folder, an unknown run,
a run with a missing or damaged file), always with a sentence, never a traceback.
"""

import argparse
import dataclasses
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from bloodcell import archs, datasets, results, runs, tested

# What a damaged file of a run raises where a command reads it: a truncated JSON file or zip
# archive (.npz, .keras), an entry missing from run.json.
DAMAGED_FILE = (KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError)

BFLOAT16_HELP = "compute in bfloat16 (weights stay float32): faster on CPUs with native bfloat16"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except (*DAMAGED_FILE, ValueError, OSError) as error:
        damage = _damage(args, error) if isinstance(error, DAMAGED_FILE) else None
        if damage is None and not isinstance(error, ValueError | OSError):
            raise  # no damaged file explains it: a bug, whose traceback is wanted
        print(f"error: {damage or error}", file=sys.stderr)
        return 2


def _damage(args, error: Exception) -> str | None:
    """What the runs this command names lack, in sentences, where a damaged file of theirs (or
    an entry missing from their run.json) explains `error`; None where none does."""
    notes = []
    for run in _named_runs(args):
        stored = results.read(run)
        lacks = stored.damaged
        if not lacks and isinstance(error, KeyError) and error.args and error.args[0] not in stored.record:
            lacks = [results.Lack(f"its '{error.args[0]}' entry", "run.json", results.NONE)]
        notes.append(results.sentence(run, lacks))
    if not any(notes):
        return None
    return " ".join(n for n in notes if n) + " Train it again, or name another run."


def _named_runs(args) -> list[runs.Run]:
    """The stored runs a command works on: its --model (the default run without one), its RUN
    arguments; those that cannot be found are left out."""
    if hasattr(args, "runs"):
        refs = args.runs
    elif hasattr(args, "run"):
        refs = [args.run]
    elif hasattr(args, "model"):
        refs = args.model if isinstance(args.model, list) else [args.model]
    else:
        return []
    found = []
    for ref in refs:
        try:
            found.append(runs.resolve(ref))
        except runs.RunError:
            continue
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bloodcell", description="Classify peripheral blood cell images."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one architecture and store the run")
    defaults = {f.name: f.default for f in dataclasses.fields(_config_class())}
    train.add_argument("--arch", required=True, help=f"one of: {', '.join(archs.REGISTRY)}")
    train.add_argument("--data", required=True, help="folder with one sub-folder per class")
    train.add_argument("--image-size", type=int, help="input size in pixels (default: the architecture's)")
    train.add_argument(
        "--crop",
        type=float,
        default=defaults["crop"],
        help="central share of the image's side the network sees (default: 1, the whole image)",
    )
    train.add_argument(
        "--framing",
        action="store_true",
        help="find the cell in each picture and frame it at its own size, white-balanced (bloodcell.finder)",
    )
    train.add_argument(
        "--stain-augment",
        action="store_true",
        help="also augment what differs between laboratories: stain mixing, zoom, blur, noise",
    )
    train.add_argument("--epochs", type=int, default=defaults["epochs"])
    train.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    train.add_argument("--optimizer", choices=("adam", "sgd", "rmsprop"), default=defaults["optimizer"])
    train.add_argument("--learning-rate", type=float, default=defaults["learning_rate"])
    train.add_argument("--schedule", choices=("cosine", "constant"), default=defaults["schedule"])
    train.add_argument("--warmup-epochs", type=int, default=defaults["warmup_epochs"])
    train.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    train.add_argument("--label-smoothing", type=float, default=defaults["label_smoothing"])
    train.add_argument("--no-augment", dest="augment", action="store_false", help="turn augmentation off")
    train.add_argument(
        "--no-shuffle", dest="shuffle", action="store_false", help="keep the training order fixed"
    )
    train.add_argument(
        "--class-weights", action="store_true", help="weight the loss by inverse class frequency"
    )
    train.add_argument(
        "--smote", action="store_true", help="SMOTE oversampling of the training split (imbalanced-learn)"
    )
    train.add_argument(
        "--folds", type=int, default=defaults["folds"], help="stratified K-fold cross-validation (0: off)"
    )
    train.add_argument(
        "--weights", default="none", help="backbones only: none, imagenet or a local weights file"
    )
    train.add_argument(
        "--head-epochs", type=int, default=defaults["head_epochs"], help="supcon: classifier epochs"
    )
    train.add_argument("--fine-tune", action="store_true", help="supcon: fine-tune everything afterwards")
    train.add_argument(
        "--patience", type=int, default=defaults["patience"], help="early stopping patience (0: off)"
    )
    train.add_argument("--test-fraction", type=float, default=defaults["test_fraction"])
    train.add_argument("--val-fraction", type=float, default=defaults["val_fraction"])
    train.add_argument("--seed", type=int, default=defaults["seed"])
    train.add_argument(
        "--split-seed",
        type=int,
        default=defaults["split_seed"],
        help="seed of the train/validation/test split and the folds (default: --seed)",
    )
    train.add_argument("--no-keep-model", dest="keep_model", action="store_false", help="store metrics only")
    train.add_argument("--name", default="", help="a label for the run id (default: the architecture)")
    train.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default=defaults["strategy"],
        help="one device; every GPU of this host; or the hosts of TF_CONFIG (TensorFlow backend)",
    )
    train.add_argument(
        "--stream",
        action="store_true",
        help="read images from their files batch by batch (tf.data) instead of holding them in memory",
    )
    train.add_argument(
        "--mixed-precision",
        action="store_true",
        help="compute in float16 on GPUs, bfloat16 on CPUs; weights, logits and softmax stay float32",
    )
    train.add_argument("--set-default", action="store_true", help="serve predictions from this run")
    train.set_defaults(command=_train)

    resume = sub.add_parser("resume", help="continue an interrupted training run from its last checkpoint")
    resume.add_argument("run", metavar="RUN_ID")
    resume.set_defaults(command=_resume)

    evaluate = sub.add_parser("evaluate", help="score a model on a labelled folder")
    evaluate.add_argument("--data", required=True, help="folder with one sub-folder per class (any subset)")
    evaluate.add_argument(
        "--model",
        action="append",
        help="run id or run directory (default: the default model); repeat it to score the ensemble "
        "(mean probability) of several models",
    )
    evaluate.add_argument("--out", help="also write the JSON here")
    evaluate.add_argument(
        "--test-split",
        action="store_true",
        help="only the images the model was tested on (its test split, found in DIR by file name)",
    )
    evaluate.add_argument(
        "--tta", action="store_true", help="average over the 8 flips and turns of each image (8x slower)"
    )
    evaluate.add_argument("--bfloat16", action="store_true", help=BFLOAT16_HELP)
    evaluate.set_defaults(command=_evaluate)

    predict = sub.add_parser("predict", help="classify images")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--model", help="run id or run directory (default: the default model)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image, one a line")
    predict.add_argument("--bfloat16", action="store_true", help=BFLOAT16_HELP)
    predict.add_argument(
        "--fields",
        action="store_true",
        help="the images are microscope fields: answer every cell found, with its box",
    )
    predict.add_argument(
        "--adapt",
        action="store_true",
        help="the images are cells of one laboratory (at least 20): adapt the model to them first, "
        "without labels (its BatchNorm statistics)",
    )
    predict.set_defaults(command=_predict)

    detect = sub.add_parser(
        "detect", help="field mode against annotated fields: white-cell recall, precision, time (JSON)"
    )
    detect.add_argument("--data", required=True, help="pictures with Pascal VOC .xml files of the same name")
    detect.add_argument("--model", help="run id or run directory (default: the default model)")
    detect.add_argument("--out", help="also write the JSON here")
    detect.add_argument("--readme", help="also update the table between the detect markers of this file")
    detect.set_defaults(command=_detect)

    adapt = sub.add_parser("adapt", help="adapt a model to a laboratory from its labelled cells; a new run")
    adapt.add_argument(
        "--data", required=True, help="the lab's cells, one sub-folder per class (any subset, 5 or more each)"
    )
    adapt.add_argument("--model", help="run id or run directory to adapt (default: the default model)")
    adapt.add_argument("--name", default="", help="a name for the new run (default: the folder's name)")
    adapt.set_defaults(command=_adapt)

    crosslab = sub.add_parser(
        "crosslab", help="score a model on other laboratories' labelled folders, before and after adapting"
    )
    crosslab.add_argument("folders", nargs="*", metavar="DIR", help="one sub-folder per class each")
    crosslab.add_argument("--model", help="run id or run directory (default: the default model)")
    crosslab.add_argument(
        "--shots", type=int, nargs="*", default=[5, 20], help="labelled cells per class to adapt with"
    )
    crosslab.add_argument("--out", help="also write the JSON here")
    crosslab.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="instead: a table of these runs side by side from their stored cross-lab records",
    )
    crosslab.add_argument(
        "--readme", help="with --compare: update the table between the crosslab markers of this file"
    )
    crosslab.set_defaults(command=_crosslab)

    sub.add_parser("archs", help="list the architectures").set_defaults(command=_archs)
    sub.add_parser("runs", help="list the stored runs").set_defaults(command=_runs)

    bench = sub.add_parser("benchmark", help="serving speed of a model on this machine (JSON)")
    bench.add_argument("images", nargs="*", metavar="IMAGE", help="cell images to answer")
    bench.add_argument("--model", help="run id or run directory (default: the default model)")
    bench.add_argument("--out", help="also write the JSON here")
    bench.add_argument(
        "--models",
        action="store_true",
        help="the default model and the best run of each architecture: scores with bootstrap intervals, "
        "training speed and share of the CPU's peak, serving speed",
    )
    bench.add_argument("--bfloat16", action="store_true", help="serve in bfloat16 (" + BFLOAT16_HELP + ")")
    bench.add_argument("--readme", help="with --models: update the table between the benchmark markers here")
    bench.add_argument(
        "--training",
        metavar="DATA",
        help="instead: input paths (memory, streamed files) and training steps (float32, mixed) on DATA",
    )
    bench.add_argument("--arch", default="cnn", help="with --training (default: cnn)")
    bench.add_argument("--image-size", type=int, default=64, help="with --training (default: 64)")
    bench.set_defaults(command=_benchmark)

    robust = sub.add_parser("robustness", help="statuses on damaged test cells of a model's split (JSON)")
    robust.add_argument(
        "--data", required=True, help="a folder holding the images the model was tested on (by file name)"
    )
    robust.add_argument("--model", help="run id or run directory (default: the default model)")
    robust.add_argument("--cells", type=int, default=200, help="test cells to damage (default: 200)")
    robust.add_argument("--out", help="also write the JSON here")
    robust.set_defaults(command=_robustness)

    misses = sub.add_parser("misses", help="the test images that runs sharing a test split answer wrongly")
    misses.add_argument("runs", nargs="+", metavar="RUN", help="run ids or run directories")
    misses.add_argument("--out", help="also write the JSON here")
    misses.set_defaults(command=_misses)

    table = sub.add_parser("table", help="the stored runs as a Markdown table")
    table.add_argument("--match", default="", help="only runs whose id contains this")
    table.set_defaults(command=_table)

    rescore = sub.add_parser(
        "rescore", help="score a stored run again on (a copy of) its data: BatchNorm, metrics, calibration"
    )
    rescore.add_argument("--model", help="run id or run directory (default: the default model)")
    rescore.add_argument(
        "--data", help="another copy of its images, e.g. the originals (default: its training data)"
    )
    rescore.set_defaults(command=_rescore)

    audit = sub.add_parser("audit", help="counts, sizes, unreadable files and duplicates of a folder")
    audit.add_argument("--data", required=True)
    audit.set_defaults(command=_audit)
    return parser


def _config_class():
    from bloodcell.training import TrainConfig

    return TrainConfig


def _train(args) -> int:
    from bloodcell import jobs, training

    fields = {f.name for f in dataclasses.fields(training.TrainConfig)}
    config = training.TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    with jobs.exclusive(config):
        run = training.train(config, log=lambda line: print(line, flush=True))
    if run is None:
        print("this worker is done; the chief worker keeps the run")
    elif args.set_default:
        runs.set_default(run.id)
        print(f"default model: {run.id}")
    return 0


def _resume(args) -> int:
    from bloodcell import jobs, training

    with jobs.exclusive():
        training.resume(args.run, log=lambda line: print(line, flush=True))
    return 0


def _evaluate(args) -> int:
    import time

    from bloodcell import evaluation
    from bloodcell.predictor import Classifier

    classifiers = [Classifier.load(ref, args.bfloat16) for ref in args.model or [None]]
    first = classifiers[0]
    if any(c.classes != first.classes for c in classifiers):
        raise ValueError("The models of an ensemble must answer the same classes in the same order.")
    dataset = datasets.discover(args.data)
    if args.test_split:
        dataset = _tested_images(dataset, *(c.run for c in classifiers))
    unknown = [c for c in dataset.classes if c not in first.classes]
    if unknown:
        raise ValueError(f"The model was not trained on {', '.join(unknown)}; remove those folders.")
    arrays = [datasets.load_arrays(dataset, c.image_size, cache=False) for c in classifiers]
    readable = np.logical_and.reduce([ok for _, ok in arrays])
    for path in (f for f, ok in zip(dataset.files, readable, strict=True) if not ok):
        print(f"skipped unreadable file {path}", file=sys.stderr)
    labels = [first.classes.index(dataset.classes[y]) for y in dataset.labels[readable]]
    started = time.perf_counter()
    probabilities = np.mean(
        [c.analyse(x[readable], tta=args.tta)[0] for c, (x, _) in zip(classifiers, arrays, strict=True)],
        axis=0,
    )
    seconds = time.perf_counter() - started
    result = evaluation.metrics(labels, probabilities, first.classes)
    result["model"] = first.run.id if len(classifiers) == 1 else [c.run.id for c in classifiers]
    result["test_time_augmentation"] = args.tta
    result["bfloat16"] = args.bfloat16
    result["model_ms_per_image"] = 1000 * seconds / max(len(labels), 1)
    return _report(result, args.out)


# `_evaluate --test-split` asks this; the answer is the one every command shares.
_tested_images = tested.images


def _report(result: dict, out: str | None) -> int:
    """Print `result` as JSON and, with `out`, also write it there (atomically)."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        from bloodcell import storage

        storage.write_bytes(Path(out), (text + "\n").encode())
    return 0


def _predict(args) -> int:
    from bloodcell.predictor import Classifier

    classifier = Classifier.load(args.model, args.bfloat16)
    sources = [(path, path) for path in args.images]
    if args.fields:
        if args.adapt:
            raise ValueError("--adapt answers single cells; leave it out with --fields.")
        fields = classifier.predict_fields(sources)
        for field in fields:
            if args.json:
                print("\n".join(json.dumps(line) for line in field.lines()))
            elif field.error:
                print(f"{field.file}: {field.error}")
            else:
                print(f"{field.file}: {len(field.cells)} cells, {field.platelets} platelets")
                for n, cell in enumerate(field.cells, start=1):
                    print(f"  {n}. {cell.box}: {_said(cell)}")
        return 2 if any(f.error for f in fields) else 0
    answers = classifier.predict(sources, adapt=args.adapt)
    for answer in answers:
        if args.json:
            print(json.dumps(answer.as_dict()))
        elif answer.error:
            print(f"{answer.file}: {answer.error}")
        else:
            print(f"{answer.file}: {_said(answer)}" + (f" ({answer.note})" if answer.note else ""))
    return 2 if any(a.error for a in answers) else 0


def _said(answer) -> str:
    return f"{answer.label} ({answer.probabilities[answer.label]:.1%}, {answer.status})"


def _detect(args) -> int:
    from bloodcell import detection
    from bloodcell.predictor import Classifier

    result = detection.measure(args.data, Classifier.load(args.model))
    if args.readme:
        from bloodcell import benchmark

        benchmark.update_readme(args.readme, detection.markdown(result, args.data), section="detect")
    return _report(result, args.out)


def _adapt(args) -> int:
    from bloodcell import adaptation
    from bloodcell.predictor import Classifier

    classifier = Classifier.load(args.model)
    lab = adaptation.read_lab(args.data, classifier)
    for path, reason in lab.refused:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    adaptation.check_enough(lab.labels, classifier.classes)
    adapted, report = adaptation.fine_tuned(classifier, lab.x, lab.labels)
    print(
        f"adapted {classifier.run.id} to {len(lab.labels)} cells of {lab.root.name}: "
        f"temperature {report['temperature']:.3f}, review below {report['review']['threshold']:.3f}"
    )
    run = adaptation.store(adapted, lab, report, args.name or _run_name(lab.root.name))
    print(run.id)
    return 0


def _run_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40] or "lab"


def _crosslab(args) -> int:
    from bloodcell import adaptation
    from bloodcell.predictor import Classifier

    if args.compare:
        table = adaptation.comparison([runs.resolve(ref) for ref in args.compare])
        print(table)
        if args.readme:
            from bloodcell import benchmark

            benchmark.update_readme(args.readme, table, section="crosslab")
        return 0
    if not args.folders:
        raise ValueError("Name at least one labelled folder (or --compare RUN...).")
    classifier = Classifier.load(args.model)
    result = adaptation.crosslab(classifier, args.folders, tuple(args.shots))
    classifier.run.write_json("crosslab.json", result)
    print(adaptation.table(result))
    if args.out:
        from bloodcell import storage

        storage.write_json(Path(args.out), result)
    return 0


def _archs(args) -> int:
    for arch in archs.REGISTRY.values():
        print(f"{arch.name:<14} {arch.input_size:>4} px  {arch.description}")
    return 0


def _runs(args) -> int:
    try:
        default = runs.default_id()
    except runs.RunError:
        default = None
    stored_runs = runs.all_runs()
    if not stored_runs:
        print(f"No runs are stored in {runs.runs_dir()}.", file=sys.stderr)
    for run in stored_runs:
        stored = results.summary(run)
        if stored.damaged:
            print(f"skipped: {stored.note}", file=sys.stderr)
            continue
        metrics, record = stored.metrics, stored.record
        accuracy = f"{metrics['accuracy']:.4f}" if "accuracy" in metrics else "-"
        mark = "*" if run.id == default else " "
        print(f"{mark} {run.id:<40} {record.get('arch', '?'):<12} {stored.status:<12} accuracy {accuracy}")
    return 0


def _benchmark(args) -> int:
    from bloodcell import benchmark

    if args.training:
        return _report(benchmark.training_speed(args.training, args.arch, args.image_size), args.out)
    if not args.images:
        raise ValueError("Name the cell images to answer (or use --training DATA).")
    image_bytes = [Path(p).read_bytes() for p in args.images]
    if not args.models:
        return _report(benchmark.serving(image_bytes, args.model, bfloat16=args.bfloat16), args.out)
    result = benchmark.models(image_bytes)
    table = benchmark.markdown(result)
    print(table)
    if args.readme:
        benchmark.update_readme(args.readme, table)
    return _report(result, args.out)


def _robustness(args) -> int:
    from bloodcell import robustness

    return _report(robustness.damaged(args.data, args.model, args.cells), args.out)


def _table(args) -> int:
    print(results.markdown(args.match, skipped=lambda note: print(f"skipped: {note}", file=sys.stderr)))
    return 0


def _misses(args) -> int:
    found = results.misses([runs.resolve(ref) for ref in args.runs])
    print(
        f"{found['n']} test images: {found['missed_by_any']} missed by at least one run, "
        f"{found['missed_by_all']} by all {len(found['runs'])}"
    )
    print("| image | class | missed by | " + " | ".join(found["runs"]) + " |")
    print("|---|---|---:|" + "---|" * len(found["runs"]))
    for image in found["images"]:
        answers = " | ".join(image["answers"].values())
        print(f"| {image['file']} | {image['true']} | {image['missed_by']} | {answers} |")
    if args.out:
        from bloodcell import storage

        storage.write_bytes(Path(args.out), (json.dumps(found, indent=2) + "\n").encode())
    return 0


def _rescore(args) -> int:
    from bloodcell import training

    training.rescore(runs.resolve(args.model), args.data, log=lambda line: print(line, flush=True))
    return 0


def _audit(args) -> int:
    print(json.dumps(datasets.audit(datasets.discover(args.data)), indent=2))
    return 0
