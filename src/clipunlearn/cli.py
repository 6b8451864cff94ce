"""The ``clipunlearn`` command line. Each verb maps onto the Python API one to one."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ClipUnlearnError

if TYPE_CHECKING:
    from .tracking import Tracked, Tracker


def _model_args(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--model", required=True, help="open_clip architecture (RN50, ViT-B-16, ...) or zoo model (mini-rn, mini-vit, mini-rn-h)")
    p.add_argument("--pretrained", default="default",
                   help="open_clip tag (openai), checkpoint file, 'zoo' or 'none' (random); default: zoo weights "
                        "for zoo models, 'openai' for OpenAI architectures")
    p.add_argument("--weights", default=None, help="a model.safetensors written by clipunlearn, loaded on top")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    if data:
        p.add_argument("--data-root", default=None, help="folder holding one folder per dataset "
                                                         "(default: $CLIPUNLEARN_DATA)")


def _precision_arg(p: argparse.ArgumentParser, default: str | None = "auto", what: str = "") -> None:
    """--precision (eval, generate, forget, audit, benchmark): the compute's numeric precision."""
    p.add_argument("--precision", default=default, metavar="auto|fp32|tf32|bf16",
                   help="numeric precision: auto (default: tf32 on CUDA, fp32 on the CPU), fp32, tf32 (CUDA's TF32 "
                        "units; fp32 on the CPU), bf16 (bf16 autocast of forward passes, fp32 weights and optimiser "
                        "state); recorded in results.json, and in the run id when not auto" + what)


def _dataset_dir_arg(p: argparse.ArgumentParser, of_run: bool = False) -> None:
    """--dataset-dir PATH (eval, forget; audit with ``of_run``): a class-folder tree read as a dataset
    without registering it."""
    if of_run:
        text = ("where the class-folder tree of a run made with --dataset-dir is now, if it has moved (default: "
                "the folder the run names)")
    else:
        text = ("a folder of class folders read as a dataset without registering it: PATH/<class>/<images> (the test "
                "split), or PATH/test/ (or val/) and PATH/train/ of class folders; a class is named by its folder, "
                "'_' read as ' '; prompted with 'a photo of a {}.' unless --templates")
    p.add_argument("--dataset-dir", default=None, metavar="PATH", help=text)


def _templates_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--templates", default=None, help="prompt templates separated by '|' (an ensemble) instead of the "
                   "dataset's own (a --dataset-dir folder's: 'a photo of a {}.'); forget: of the forget dataset")


def _dataset_dir(args) -> str | None:
    """--dataset-dir PATH as a dataset name (the folder's absolute path), checked; None without it."""
    from .data import folder_dataset

    return folder_dataset(args.dataset_dir) if args.dataset_dir is not None else None


def _templates(args) -> list[str] | None:
    from .data import split_names

    return split_names(args.templates.split("|")) if args.templates else None


def _track_arg(p: argparse.ArgumentParser, home: str) -> None:
    """--track (forget, benchmark, zoo train): log the run to TensorBoard or MLflow once it is written."""
    p.add_argument("--track", action="append", default=[], metavar="tensorboard|mlflow[:URI]",
                   help=f"log the run once written: tensorboard (event files under tensorboard/ in {home}, or in the "
                        f"folder after the colon) or mlflow (a SQLite store under mlflow/ in {home}, or the tracking "
                        "URI or folder after the colon); repeatable; pip install -e \".[tracking]\"")


def _trackers(args, home: Path, experiment: str) -> list[Tracker]:
    """The trackers of --track, checked before the run (library installed, folder or store usable)."""
    from .tracking import open_trackers

    return open_trackers(args.track, home, experiment)


def _track(trackers: list[Tracker], read: Callable[[], Tracked]) -> None:
    """Log what ``read()`` returns to ``trackers``; a failure is a one-line warning, never an error."""
    from .tracking import track

    for where in track(trackers, read, lambda line: print(f"clipunlearn: warning: {line}", file=sys.stderr)):
        print(f"logged to {where}")


def _load(args):
    from .models import load_clip, resolve_device

    return load_clip(args.model, args.pretrained, args.weights, resolve_device(args.device))


def cmd_layers(args) -> int:
    from .models import load_clip, tensor_catalogue

    clip = load_clip(args.model, pretrained="none")
    rule = "catalogue"
    if args.method is not None:
        from .methods import get_method

        config = get_method(args.method).build_config(args.preset, clip.family, args.ablation)
        rule = getattr(config, "eligibility", "catalogue")
    elif args.preset != "default" or args.ablation:
        raise ClipUnlearnError("--preset and --ablation need --method (e.g. --method lip --preset paper).")
    rows = tensor_catalogue(clip.model, rule)
    if args.json:
        print(json.dumps({"model": args.model, "family": clip.family,
                          "tensors": [r.as_dict() for r in rows]}, indent=2))
        return 0
    import pandas as pd

    table = pd.DataFrame([{"tensor": r.name, "tower": r.tower, "shape": "x".join(map(str, r.shape)) or "scalar",
                           "eligible": "yes" if r.eligible else "no", "why": r.reason} for r in rows])
    if not args.all:
        table = table[table.eligible == "yes"]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 80):
        width = int(table.tensor.str.len().max())
        print(table.to_string(index=False, justify="left",
                              formatters={"tensor": lambda v: f"{v:<{width}}", "why": lambda v: f"{v:<40}"}))
    n_img = sum(r.eligible and r.tower == "image" for r in rows)
    n_txt = sum(r.eligible and r.tower == "text" for r in rows)
    print(f"\n{args.model} ({clip.family} image tower): {n_img} image and {n_txt} text tensors may be updated, "
          f"{sum(not r.eligible for r in rows)} never" + ("" if args.all else " (--all lists them)"))
    return 0


def cmd_eval(args) -> int:
    from .api import evaluate
    from .data import load_image_set, split_names
    from .evaluation import Evaluator, FeatureCache
    from .io import check_output_free, write_json
    from .memory import steady_heap
    from .precision import parse_precision, resolve_precision

    _setup_logging(True)  # warnings only: a batch halved when memory ran out
    if args.json:
        check_output_free(args.json, args.overwrite, "JSON output")
    steady_heap()  # peak memory flat in the number of images (clipunlearn.memory)
    folder = _dataset_dir(args)
    names = list(dict.fromkeys(split_names(args.datasets) + ([folder] if folder else [])))
    if not names:
        raise ClipUnlearnError("No dataset given. Pass names such as --datasets caltech101,cifar10, or a folder of "
                               "class folders with --dataset-dir PATH.")
    precision = parse_precision(args.precision)
    for n in names:  # fail on a bad name or folder before loading the model
        load_image_set(n, args.data_root, args.split, download=args.download)
    coarse_labels = None
    if args.coarse is not None:
        from .evaluation.coarse import coarse_request

        if "coarse" in names:
            raise ClipUnlearnError("A dataset named 'coarse' would share its key in --json with the coarse labels' "
                                   "results; rename its folder, or leave --coarse out.")
        coarse_labels = coarse_request(names, args.data_root, args.split, split_names(args.coarse) or None)
    clip = _load(args)
    templates = _templates(args)
    evaluator = Evaluator(clip, FeatureCache(args.cache_dir), batch_size=args.batch_size, workers=args.workers,
                          progress=not args.quiet)
    t0 = time.time()
    results = evaluate(clip, names, args.data_root, args.split, templates, evaluator, precision=precision)
    out = {name: r.to_json() for name, r in results.items()}
    width = max(len(n) for n in out)
    print(f"{'dataset':<{width}}  {'top1':>6}  {'n':>6}")
    for name, r in out.items():
        print(f"{name:<{width}}  {r['top1']:6.3f}  {r['n']:6d}")
    if coarse_labels is not None:
        from .evaluation.coarse import coarse_accuracy

        coarse = coarse_accuracy(evaluator, coarse_labels)
        width = max(len(x.label) for x in coarse.labels)
        print(f"\ncoarse labels ({len(coarse.vocabulary)}, {coarse.template!r}): top-1 among them of the images "
              f"whose class carries the label")
        print(f"{'label':<{width}}  {'top1':>6}  {'n':>6}  classes")
        for x in coarse.labels:
            print(f"{x.label:<{width}}  {x.top1:6.3f}  {x.n:6d}  {len(x.classes)}")
        print(f"{'mean':<{width}}  {coarse.mean:6.3f}")
        if coarse.without_images:
            print(f"(no class of these datasets carries: {', '.join(coarse.without_images)})")
        out["coarse"] = coarse.to_json()
    if not args.quiet:
        print(f"({clip.arch}, {clip.source}, {args.split} split, {resolve_precision(precision, clip.device).value}, "
              f"{time.time() - t0:.1f}s)", file=sys.stderr)
    if args.json:
        write_json(args.json, out)
    return 0


def cmd_zoo_train(args) -> int:
    from .io import check_output_free, write_json
    from .zoo import RECIPES, train_zoo_model

    if args.name not in RECIPES:
        from .errors import unknown

        raise unknown("zoo model recipe", args.name, RECIPES)
    out = Path(args.out or f"{args.name}.safetensors")
    check_output_free(out, args.overwrite, "weights file")
    import dataclasses

    recipe = RECIPES[args.name]
    if args.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    if args.seed is not None:
        recipe = dataclasses.replace(recipe, seed=args.seed)
    from .data import split_names
    from .zoo.train import checkpoint_path, excluded_classes

    exclude = excluded_classes(list(args.exclude), args.data_root)
    trackers = _trackers(args, out.parent, "clipunlearn-zoo")
    record = train_zoo_model(args.name, args.data_root, out, recipe, log=print,
                             datasets=split_names(args.datasets) or None, exclude=exclude,
                             checkpoint=checkpoint_path(out), restart=args.restart)
    write_json(out.with_suffix(".json"), record)
    print(f"trained {args.name} on {record['train_images']} images of {len(record['datasets'])} datasets "
          f"in {record['train_seconds']:.0f}s (+{record['decode_seconds']:.0f}s decoding); weights: {out}")
    from .tracking import from_zoo

    _track(trackers, lambda: from_zoo(record, out.stem, out.with_suffix(".json")))
    return 0


def cmd_models(args) -> int:
    from .models import available_models
    from .models.zoo import ZOO_MODELS, read_card
    from .zoo.card import card_lines, card_summary

    if args.card is not None:
        if args.card not in ZOO_MODELS:
            from .errors import unknown

            raise unknown("zoo model", args.card, ZOO_MODELS)
        card = read_card(args.card)
        if card is None:
            raise ClipUnlearnError(f"No card ships with {args.card}; write one with `clipunlearn zoo card {args.card} "
                                   "--data-root DATA`.")
        print("\n".join(card_lines(card)))
        return 0
    names = available_models()
    if not args.all:
        names = [n for n in names if n in ZOO_MODELS or n.startswith(("RN", "ViT-B", "ViT-L"))]
    width = max(len(n) for n in ZOO_MODELS)
    for n in names:
        card = read_card(n) if n in ZOO_MODELS else None
        print(f"{n:<{width}}  zoo: {card_summary(card)} (clipunlearn models --card {n})" if card else n)
    return 0


def cmd_zoo_card(args) -> int:
    from .evaluation import Evaluator, FeatureCache
    from .io import check_output_free, write_json
    from .models import load_clip
    from .models.zoo import ZOO_MODELS, weights_path
    from .zoo.card import card_lines, make_card

    if args.name not in ZOO_MODELS:
        from .errors import unknown

        raise unknown("zoo model", args.name, ZOO_MODELS)
    weights = Path(args.weights_file) if args.weights_file else weights_path(args.name)
    if not weights.is_file():
        raise ClipUnlearnError(f"No weights file {str(weights)!r} for {args.name}; pass the one `clipunlearn zoo train "
                               f"{args.name}` wrote with --weights-file.")
    out = Path(args.out or f"{args.name}.card.json")
    check_output_free(out, args.overwrite, "card")
    from .data import load_image_set, split_names, zoo_datasets

    for dataset in split_names(args.datasets) or zoo_datasets():  # a missing dataset fails before the model loads
        load_image_set(dataset, args.data_root, "test")
    clip = load_clip(args.name, str(weights))
    evaluator = Evaluator(clip, FeatureCache(args.cache_dir), workers=args.workers, progress=not args.quiet)
    card = make_card(args.name, clip, weights, evaluator, args.data_root, split_names(args.datasets) or None)
    write_json(out, card)
    print("\n".join(card_lines(card)))
    print(f"card: {out}")
    return 0


def cmd_datasets(args) -> int:
    from .data import dataset_names, get_dataset_spec

    for n in dataset_names():
        s = get_dataset_spec(n)
        print(f"{n:<15} {s.templates[0]!r}" + ("  (paper)" if s.paper else ""))
    return 0


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("clipunlearn")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_clipunlearn_console", False) for h in logger.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._clipunlearn_console = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    for h in logger.handlers:
        if getattr(h, "_clipunlearn_console", False):
            h.setLevel(logging.WARNING if quiet else logging.INFO)
            if h.stream is not sys.stderr:  # main() called again with another stderr (a test's capture, a notebook)
                h.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed
    logger.propagate = False


def cmd_generate(args) -> int:
    from .data import load_image_set, split_names
    from .io import check_output_free
    from .precision import computing, parse_precision
    from .synthetic import GenerationConfig, generate_with_progress, save_synthetic

    _setup_logging(True)  # warnings only: a batch halved when memory ran out
    check_output_free(args.out, args.overwrite, "synthetic set")
    precision = parse_precision(args.precision)
    names = split_names(args.classes)
    images = load_image_set(args.dataset, args.data_root, "test")
    classes = images.class_indices(names)
    clip = _load(args)
    cfg = GenerationConfig(n_per_class=args.n_per_class, threshold=args.threshold, max_steps=args.max_steps,
                           bn_prior=args.bn_prior, seed=args.seed)
    with computing(precision, clip.device) as used:
        s = generate_with_progress(clip, images.classnames, classes, images.name, images.templates[0], cfg,
                                   not args.quiet)
    save_synthetic(s, args.out)
    print(f"{len(s)} images for {', '.join(names)}: {int(s.accepted.sum())} accepted, mean target probability "
          f"{float(s.probs.mean()):.3f}, final threshold {s.final_threshold:.3f}, {s.seconds:.1f}s ({used.value}) "
          f"-> {args.out}")
    return 0


def _print_table(results: dict) -> None:
    from .runs import BeforeAfter
    from .runs.results import parse_results

    r = parse_results(results)
    rows: list[tuple[str, BeforeAfter]] = [(f"target: {', '.join(r.classes)}", r.target),
                                           (f"other classes of {r.dataset}", r.other_classes), *r.datasets.items()]
    if r.synthetic_acc.before is not None:
        rows.append(("synthetic forget set", r.synthetic_acc))
    w = max(len(name) for name, _ in rows)
    print(f"{'accuracy':<{w}}  {'before':>7}  {'after':>7}")
    for name, ba in rows:
        print(f"{name:<{w}}  {ba.before:7.3f}  {ba.after:7.3f}")
    score = "undefined" if r.avg_score is None else f"{r.avg_score:.3f}"
    print(f"Avg. Score (lower is better): {score}   epochs: {r.epochs}   "
          f"seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r.seconds.items()))


def cmd_methods(args) -> int:
    from .methods import DATA_KINDS, get_method, method_names

    rows = [get_method(n).describe() for n in method_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']:<12} {r['zero_shot']:<8} {r['title']}")
        print(f"{'':<12} needs: {', '.join(r['needs']) or 'nothing but class names'}; presets: "
              f"{', '.join(r['presets'])}; ablations: {', '.join(r['ablations']) or 'none'}"
              + ("" if len(r["families"]) > 1 else f"; image towers: {', '.join(r['families'])} only"))
    print("\ndata kinds: " + "; ".join(f"{k}: {v}" for k, v in DATA_KINDS.items()))
    return 0


def cmd_forget(args) -> int:
    from .tracking import from_run

    trackers = _trackers(args, Path(args.out), "clipunlearn-forget")
    code = _forget(args)
    _track(trackers, lambda: from_run(args.out))
    return code


def _forget(args) -> int:
    from .data import split_names
    from .methods import parse_option
    from .runs import ForgetSettings, forget

    _setup_logging(args.quiet)
    folder = _dataset_dir(args)
    if folder is not None:
        if args.dataset:
            raise ClipUnlearnError("--dataset and --dataset-dir both name the dataset to forget from; pass one of "
                                   "them.")
        args.dataset = folder
    templates = _templates(args)
    subgroup = args.setting or args.forget_subgroup or args.retain_subgroups or args.coarse_label
    if templates and (args.concept or subgroup):
        raise ClipUnlearnError("--templates is for class requests (--dataset or --dataset-dir with --classes); a "
                               "concept request prompts with its vocabulary's templates, a subgroup request with its "
                               "setting's.")
    if args.concept:
        return _forget_concept(args)
    if args.images or args.retain_images:
        raise ClipUnlearnError("--images and --retain-images are for concept requests; add --concept NAME.")
    if args.setting or args.forget_subgroup or args.retain_subgroups or args.coarse_label:
        return _forget_subgroup(args)
    if not args.dataset or not args.classes:
        raise ClipUnlearnError("forget needs --dataset and --classes (a class request; --dataset-dir PATH for a folder "
                               "of class folders), or a subgroup request: --setting NAME, or --dataset with "
                               "--forget-subgroup, --retain-subgroups and --coarse-label.")
    settings = ForgetSettings(
        model=args.model, dataset=args.dataset, classes=split_names(args.classes), out=args.out,
        data_root=args.data_root, pretrained=args.pretrained, weights=args.weights,
        other_datasets=None if args.other_datasets is None else split_names(args.other_datasets),
        synthetic=args.synthetic, method=args.method or "lip", preset=args.preset, ablation=args.ablation, seed=args.seed,
        device=args.device, retrieval=not args.no_retrieval, template_change=not args.no_template_change,
        n_per_class=args.n_per_class, overwrite=args.overwrite, progress=not args.quiet,
        max_epochs=args.max_epochs, generation_max_steps=args.max_steps,
        options=dict(parse_option(o) for o in args.set), cache_dir=args.cache_dir, save_model=args.save_model,
        templates=templates, precision=args.precision)
    results = forget(settings)
    _print_table(results)
    print(f"run written to {args.out} (results.json, model.safetensors, report.md)")
    return 0


def _forget_subgroup(args) -> int:
    from .data import split_names
    from .methods import parse_option
    from .runs.subgroup import SubgroupSettings, forget_subgroup, setting_from_flags

    if args.classes:
        raise ClipUnlearnError("--classes is for class requests; a subgroup request names --forget-subgroup "
                               "(or --setting). Drop --classes.")
    setting = setting_from_flags(args.setting, args.dataset, split_names(args.forget_subgroup or ""),
                                 split_names(args.retain_subgroups or ""), args.coarse_label,
                                 split_names(args.labels) if args.labels else None)
    method = args.method or "forget-remind-restore"
    settings = SubgroupSettings(
        model=args.model, setting=setting, out=args.out, data_root=args.data_root, pretrained=args.pretrained,
        weights=args.weights, method=method, preset=args.preset, ablation=args.ablation, seed=args.seed,
        device=args.device, n_per_class=args.n_per_class, overwrite=args.overwrite, progress=not args.quiet,
        max_epochs=args.max_epochs, generation_max_steps=args.max_steps,
        options=dict(parse_option(o) for o in args.set), cache_dir=args.cache_dir, retrieval=not args.no_retrieval,
        other_datasets=None if args.other_datasets is None else split_names(args.other_datasets),
        save_model=args.save_model, precision=args.precision)
    results = forget_subgroup(settings)
    rows = [(f"{name} ({c['role']})", c["before"], c["after"]) for name, c in results["columns"].items()]
    rows += [(f"{k} (own classes)", results["datasets"][k]["before"], results["datasets"][k]["after"])
             for k in results["setting"]["other_datasets"]]
    w = max(len(r[0]) for r in rows)
    print(f"{'accuracy':<{w}}  {'before':>7}  {'after':>7}")
    for name, b, a in rows:
        print(f"{name:<{w}}  {b:7.3f}  {a:7.3f}")
    score = results["ratio_score"]
    print(f"Score (CVPR'25, higher is better): {'undefined' if score is None else f'{score:.1f}'}   "
          f"seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items()))
    print(f"run written to {args.out} (results.json, model.safetensors, report.md)")
    return 0


def _forget_concept(args) -> int:
    from .data import split_names
    from .methods import parse_option
    from .runs.concept import ConceptSettings, forget_concept

    if args.dataset or args.classes or args.setting or args.forget_subgroup:
        raise ClipUnlearnError("--concept is a request of its own; drop --dataset/--dataset-dir/--classes/--setting/"
                               "--forget-subgroup (measure a dataset with --other-datasets).")
    settings = ConceptSettings(
        model=args.model, concepts=list(args.concept), out=args.out, vocabulary=args.vocabulary, images=args.images,
        retain_images=args.retain_images, data_root=args.data_root,
        other_datasets=split_names(args.other_datasets or ""), pretrained=args.pretrained, weights=args.weights,
        method=args.method or "lip", preset=args.preset, ablation=args.ablation, seed=args.seed, device=args.device,
        n_per_class=args.n_per_class, overwrite=args.overwrite, progress=not args.quiet, max_epochs=args.max_epochs,
        generation_max_steps=args.max_steps, options=dict(parse_option(o) for o in args.set),
        cache_dir=args.cache_dir, save_model=args.save_model, precision=args.precision)
    r = forget_concept(settings)
    m = r["measured"]
    if m["concept images"] is None:
        print("Only synthetic images of the concept were checked (no --images folder).")
    rows = []
    if m["concept images"] is not None:
        rows.append((f"your photos called {', '.join(r['concepts'])} ({m['concept images']['n']})",
                     r["target_before"], r["target_after"]))
    if m["retain images"] is not None:
        rows.append((f"retain photos unchanged ({m['retain images']['n']})", 1.0, r["other_classes_after"]))
    if r["synthetic_acc_before"] is not None:
        rows.append(("synthetic images of the concept", r["synthetic_acc_before"], r["synthetic_acc_after"]))
    rows += [(k, v["before"], v["after"]) for k, v in r["datasets"].items()]
    w = max(len(x[0]) for x in rows)
    print(f"{'measured':<{w}}  {'before':>7}  {'after':>7}")
    for name, b, a in rows:
        print(f"{name:<{w}}  {b:7.3f}  {a:7.3f}")
    print(f"run written to {args.out} (results.json, model.safetensors, report.md)")
    return 0


def cmd_merge(args) -> int:
    from .runs.merge import merge_runs

    clip = merge_runs(args.runs, args.out, args.how, args.overwrite)
    print(f"merged {len(args.runs)} runs of {clip.arch} ({args.how} of their changes) into {args.out}; evaluate it "
          f"with: clipunlearn eval --model {clip.arch} --weights {args.out} --datasets ...")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    """A comma-separated list of whole numbers, or a one-line error naming the flag."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ClipUnlearnError(f"{flag} takes whole numbers separated by commas, e.g. 5,25,100; got {text!r}.") from None


def cmd_audit(args) -> int:
    from .audit import audit_run

    _setup_logging(args.quiet)
    # a grid by name, or attacks ("DATA OPTIMIZER PARAMS lr=LR", separated by ';')
    grid = args.relearning if " " not in args.relearning.strip() else [a for a in args.relearning.split(";") if a.strip()]
    audit = audit_run(args.run, oracle=args.oracle, attacks=args.attacks, data_root=args.data_root, out=args.out,
                      overwrite=args.overwrite, seed=args.seed, relearning=grid,
                      relearn_steps=_int_list(args.relearn_steps, "--relearn-steps"), cache_dir=args.cache_dir,
                      dataset_dir=args.dataset_dir, precision=args.precision)
    for v in audit["verdict"]:
        print(f"{v['attack']:<15} {v['verdict']:<30} {v['figure']}  [{v['threshold']}]")
    from .audit.report import describe_task

    task = describe_task(audit)
    if task:
        print(task)
    print(f"audit written to {args.out or Path(args.run) / 'audit'} (audit.md, audit.json, plots)")
    return 0


def cmd_subgroups(args) -> int:
    from .data.subgroups import get_setting, setting_names

    for name in setting_names():
        s = get_setting(name)
        forget = ", ".join(g.describe() for g in s.forget)
        retain = ", ".join(g.label for g in s.retain)
        print(f"{name:24s} {s.kind:13s} forget {forget}; retain {retain}")
    return 0


def _seed_numbers(text: str) -> list[int]:
    """``--seeds 0,1`` as integers."""
    from .data import split_names
    from .errors import ClipUnlearnError

    try:
        return [int(x) for x in split_names(text)]
    except ValueError:
        raise ClipUnlearnError(f"--seeds {text!r} is not a list of integers; pass e.g. --seeds 0,1.") from None


def _seeds(text: str, suite) -> list[int]:
    """``--seeds 0,1``: integers among the suite's seeds."""
    from .errors import ClipUnlearnError

    known = sorted({*suite.seeds, *(x for t in suite.tables for x in (t.seeds or ()))})
    seeds = _seed_numbers(text)
    for seed in seeds:
        if seed not in known:
            raise ClipUnlearnError(f"--seeds: the suite {suite.name!r} has no seed {seed} (its seeds: "
                                   f"{', '.join(map(str, known))}).")
    return seeds


def cmd_benchmark(args) -> int:
    from .benchmark import ExecutorOptions, load_suite, run_suite
    from .data import split_names

    _setup_logging(True)
    suite = load_suite(args.suite)
    if args.precision is not None:  # over the suite's own (auto unless its file sets one)
        from dataclasses import replace

        from .precision import parse_precision

        suite = replace(suite, precision=parse_precision(args.precision).value)
    options = ExecutorOptions(workers=args.workers, cpus_per_cell=args.cpus_per_cell,
                              gpus_per_cell=args.gpus_per_cell, max_retries=args.max_retries,
                              ray_address=args.ray_address, slurm_partition=args.slurm_partition,
                              slurm_time_min=args.slurm_time_min, slurm_folder=args.slurm_folder,
                              slurm_cluster=args.slurm_cluster)
    seeds = _seeds(args.seeds, suite) if args.seeds else None
    trackers = [] if args.dry_run else _trackers(args, Path(args.out), suite.name)
    p = run_suite(suite, args.out, args.data_root, split_names(args.model) or None, executor=args.executor,
                  retry_failed=args.retry_failed, dry_run=args.dry_run, device=args.device, options=options,
                  rerun_stale=args.rerun_stale, tables=split_names(args.tables) or None, seeds=seeds,
                  save_model=args.save_models, trackers=trackers)
    if args.dry_run:
        return 0
    from .benchmark import plan
    from .benchmark.suite import only_tables

    tables = split_names(args.tables)
    after = plan(only_tables(suite, tables) if tables else suite, args.out, split_names(args.model) or None,
                 data_root=args.data_root, seeds=seeds)
    print(f"{len(after.done)} cells done, {len(after.failed)} failed (their errors: {args.out}/failed/), "
          f"{len(after.todo)} to run" + (" -- rerun with --retry-failed" if after.failed else ""))
    if after.done:  # the last line: the one command that writes the report of what is done
        import shlex

        print(f"write its report with: clipunlearn benchmark report {shlex.quote(str(args.out))} "
              f"--to {shlex.quote(str(Path(args.out) / 'report'))}")
    return 0 if not after.failed and not after.todo and p is not None else 1


def cmd_benchmark_report(args) -> int:
    from .benchmark.report import write_report

    out = write_report(args.folder, args.to, records=args.records)
    print(f"report written to {out} (tables/ and plots/" + (", records/" if args.records else "") + " beside it)")
    return 0


def cmd_benchmark_status(args) -> int:
    from .benchmark.status import status_lines, suite_status
    from .data import split_names

    seeds = _seed_numbers(args.seeds) if args.seeds else None
    status = suite_status(args.folder, tables=split_names(args.tables) or None, seeds=seeds)
    print("\n".join(status_lines(status, args.folder, cells=args.cells)))
    return 0


def cmd_query(args) -> int:
    from .runs.query import format_answer, query

    answer = query(args.folder, args.sql, args.to, args.force)
    print(format_answer(answer))
    if args.to:
        print(f"written to {args.to}", file=sys.stderr)
    return 0


#: what `clipunlearn demo` forgets: a class mini-rn knows well, measured on two small datasets
DEMO = {"model": "mini-rn", "dataset": "caltech101", "classes": ["motorbike"],
        "other_datasets": ["cifar10", "imagenette"], "n_per_class": 32}


def cmd_demo(args) -> int:
    import tempfile

    from .runs import ForgetSettings, forget

    _setup_logging(args.quiet)
    out = args.out or str(Path(tempfile.mkdtemp(prefix="clipunlearn-demo-")) / "run")
    settings = ForgetSettings(model=DEMO["model"], dataset=DEMO["dataset"], classes=DEMO["classes"], out=out,
                              data_root=args.data_root, other_datasets=DEMO["other_datasets"],
                              n_per_class=DEMO["n_per_class"], progress=not args.quiet)
    t0 = time.time()
    results = forget(settings)
    _print_table(results)
    print(f"demo took {time.time() - t0:.0f}s; run written to {out}")
    return 0


def _add_layers(sub: argparse._SubParsersAction) -> None:
    """clipunlearn layers: the tensors a method may update."""
    p = sub.add_parser("layers", help="which tensors a method may update, per architecture")
    p.add_argument("--model", required=True)
    p.add_argument("--method", default=None, help="show the eligibility of this method's preset (e.g. lip)")
    p.add_argument("--preset", default="default")
    p.add_argument("--ablation", default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--all", action="store_true", help="list the tensors that never change too")
    p.set_defaults(func=cmd_layers)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    """clipunlearn eval: zero-shot top-1."""
    p = sub.add_parser("eval", help="zero-shot top-1 on datasets")
    _model_args(p)
    p.add_argument("--datasets", default=None, help="comma-separated dataset names (and/or --dataset-dir)")
    _dataset_dir_arg(p)
    p.add_argument("--split", default="test", choices=["train", "test"])
    _templates_arg(p)
    p.add_argument("--json", default=None, help="write {dataset: {top1, n, per_class}} here (and \"coarse\" with "
                   "--coarse)")
    p.add_argument("--coarse", nargs="?", const="", default=None, metavar="LABELS",
                   help="also classify the images of every class that carries a coarse label among those labels "
                        "alone (\"a photo of a dog.\"): top-1 per label (superclasses.toml; default labels: the "
                        "subgroup settings' 14, or comma-separated LABELS)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", default=None, help="keep image features here across runs")
    p.add_argument("--download", action="store_true", help="let torchvision download datasets it knows (online)")
    _precision_arg(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


def _add_zoo(sub: argparse._SubParsersAction) -> None:
    """clipunlearn zoo train: a zoo model from scratch."""
    p = sub.add_parser("zoo", help="the mini zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    z = zsub.add_parser("train", help="train a zoo model from scratch (CPU, seeded)")
    z.add_argument("name", help="a zoo recipe: mini-rn, mini-vit, mini-rn-h (captions at several levels)")
    z.add_argument("--data-root", default=None)
    z.add_argument("--out", default=None, help="weights file (default NAME.safetensors)")
    z.add_argument("--epochs", type=int, default=None)
    z.add_argument("--seed", type=int, default=None)
    z.add_argument("--datasets", default=None, help="train on these datasets only (default: all eight)")
    z.add_argument("--exclude", action="append", default=[], metavar="DATASET:CLASS",
                   help="leave every train image of this class out (in every dataset with that class name): an "
                        "oracle that never saw it, for clipunlearn audit (repeatable)")
    z.add_argument("--overwrite", action="store_true")
    z.add_argument("--restart", action="store_true",
                   help="start over even if OUT.checkpoint (written after every epoch) exists; by default the "
                        "training resumes from it, to the same weights as an uninterrupted one")
    _track_arg(z, "the weights file's folder")
    z.set_defaults(func=cmd_zoo_train)
    c = zsub.add_parser("card", help="measure a zoo model's card: zero-shot top-1 per dataset and per coarse label")
    c.add_argument("name", help="a zoo model (mini-rn, mini-vit, mini-rn-h)")
    c.add_argument("--data-root", default=None)
    c.add_argument("--weights-file", default=None, help="the weights to measure (default: the shipped ones)")
    c.add_argument("--datasets", default=None, help="measure these datasets only (default: the eight the zoo trains "
                                                    "on; a shipped card has all eight)")
    c.add_argument("--out", default=None, help="card file (default NAME.card.json; the shipped card lives in "
                                               "src/clipunlearn/models/zoo/)")
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--cache-dir", default=None, help="keep image features here across runs")
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_zoo_card)


def _add_listings(sub: argparse._SubParsersAction) -> None:
    """clipunlearn models, datasets and methods: what there is."""
    p = sub.add_parser("models", help="list model names")
    p.add_argument("--all", action="store_true", help="every open_clip architecture")
    p.add_argument("--card", default=None, metavar="NAME", help="print a zoo model's card")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("datasets", help="list dataset names and default templates")
    p.set_defaults(func=cmd_datasets)
    p = sub.add_parser("methods", help="list the unlearning methods, their data needs, presets and ablations")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.set_defaults(func=cmd_methods)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    """clipunlearn generate: a synthetic forget set."""
    p = sub.add_parser("generate", help="make a synthetic forget set from class names")
    _model_args(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--classes", required=True, help="comma-separated class names, as in the dataset")
    p.add_argument("-n", "--n-per-class", type=int, default=64)
    p.add_argument("--out", required=True, help="file to write (.safetensors; a .png grid is written beside it)")
    p.add_argument("--threshold", type=float, default=None, help="acceptance probability (default 0.7 ResNet, 0.9 ViT)")
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--bn-prior", type=float, default=0.0, help="weight of the batch-norm statistics prior (ResNet)")
    p.add_argument("--seed", type=int, default=0)
    _precision_arg(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_generate)


def _subgroup_request_args(p: argparse.ArgumentParser) -> None:
    """forget --setting | --forget-subgroup ...: a subgroup of a coarse class (CVPR'25)."""
    g = p.add_argument_group("subgroup requests (CVPR'25): forget one subgroup of a coarse class")
    g.add_argument("--setting", default=None, help="a shipped subgroup setting (clipunlearn subgroups lists them)")
    g.add_argument("--forget-subgroup", default=None, help="class(es) of --dataset to forget, comma-separated")
    g.add_argument("--retain-subgroups", default=None, help="classes of --dataset to keep (their train images "
                   "are the retain set), comma-separated")
    g.add_argument("--coarse-label", default=None, help="the label the user knows the subgroups by, e.g. flower")
    g.add_argument("--labels", default=None, help="labels the classifier chooses among, comma-separated "
                   "(default: 14 everyday coarse labels)")


def _concept_request_args(p: argparse.ArgumentParser) -> None:
    """forget --concept NAME ...: a name, in no dataset needed."""
    c = p.add_argument_group("concept requests: forget a name, in no dataset needed")
    c.add_argument("--concept", action="append", default=[], help="a name to forget (repeatable)")
    c.add_argument("--vocabulary", default="imagenet", help="the names to keep: imagenet (1000 names, 80 templates), "
                   "zoo (the mini zoo's training names), a dataset's name, or a text file of names")
    c.add_argument("--images", default=None, help="a folder of your photos of the concept (no labels): measured "
                   "before and after, and given to methods allowed real forget images")
    c.add_argument("--retain-images", default=None, help="a folder of photos to keep (no labels)")


def _add_forget(sub: argparse._SubParsersAction) -> None:
    """clipunlearn forget: a class, a subgroup or a concept, into a run folder."""
    p = sub.add_parser("forget", help="make a model forget classes, evaluate before and after, write a run folder")
    _model_args(p)
    p.add_argument("--dataset", default=None)
    _dataset_dir_arg(p)
    _templates_arg(p)
    p.add_argument("--classes", default=None, help="comma-separated class names, as in the dataset")
    _subgroup_request_args(p)
    _concept_request_args(p)
    p.add_argument("--other-datasets", default=None,
                   help="datasets whose accuracy must be kept (default: the other paper datasets; '' for none)")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--synthetic", default=None, help="reuse a synthetic set made by `clipunlearn generate`")
    p.add_argument("--method", default=None, help="a registered method (clipunlearn methods lists them; "
                   "default: lip for classes, forget-remind-restore for subgroups)")
    p.add_argument("--preset", default="default", help="a preset of the method: default (tuned on the mini "
                                                        "zoo) or paper (the paper's settings)")
    p.add_argument("--ablation", default=None, help="an ablation switch of the method, e.g. no-text-loss")
    p.add_argument("--no-retrieval", action="store_true", help="skip retrieval precision@k")
    p.add_argument("--no-template-change", action="store_true", help="skip the evaluation with other templates")
    p.add_argument("--save-model", choices=("full", "changed"), default="full",
                   help="model.safetensors: every tensor (default; a checkpoint open_clip loads too) or only the "
                        "tensors the run changed (smaller; clipunlearn's --weights puts them back on the model)")
    p.add_argument("-n", "--n-per-class", type=int, default=64)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="generation steps per image attempt (default 3000); also caps the retain images' budget")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a field of the method's config over the preset, e.g. --set lr=1e-4 "
                        "(repeatable; fields: docs/methods.md)")
    p.add_argument("--cache-dir", default=None,
                   help="keep image features here across runs: a later run on the same model and datasets "
                        "evaluates 'before' from disk and only re-runs the layers the method changed")
    p.add_argument("--seed", type=int, default=0)
    _precision_arg(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    _track_arg(p, "the run folder")
    p.set_defaults(func=cmd_forget)


def _add_merge(sub: argparse._SubParsersAction) -> None:
    """clipunlearn merge: one model from the models of forget runs."""
    p = sub.add_parser("merge", help="merge the models of forget runs into one that forgets all their targets "
                                     "(CVPR'25 App. A.2)")
    p.add_argument("runs", nargs="+", help="run folders of one model")
    p.add_argument("--out", required=True, help="the merged model (.safetensors) to write")
    p.add_argument("--how", choices=("mean", "sum"), default="mean",
                   help="mean of the runs' changes (the paper's merge) or their sum (task arithmetic)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_merge)


def _add_audit(sub: argparse._SubParsersAction) -> None:
    """clipunlearn audit: attack a forget run's model."""
    p = sub.add_parser("audit", help="attack a forget run's model: does the class come back? (RUN/audit/)",
                       description="Attack a forget run's model and say, per attack, whether the class came back "
                                   "(docs/audit.md). A subgroup run is audited as a class of the subgroup's dataset; "
                                   "a concept run on the user's photos (or the run's synthetic images), without an "
                                   "oracle, the attacks that need a train split reported as skipped.")
    p.add_argument("run", help="a run folder written by clipunlearn forget (a class, subgroup or concept run)")
    p.add_argument("--oracle", default=None, help="weights of the same architecture trained without the class "
                                                  "(clipunlearn zoo train MODEL --exclude DATASET:CLASS; a subgroup "
                                                  "run: DATASET:SUBGROUP; a concept run takes none)")
    p.add_argument("--attacks", default=None, help="comma-separated: prompts,images,probe,prototype,relearning,mia,"
                                                   "weights,oracle (default: all; oracle only with --oracle; on a "
                                                   "concept run probe, prototype, relearning and mia are skipped)")
    p.add_argument("--relearning", default="held-out",
                   help="the relearning attacks: held-out (the verdict's, default), tuning, full (the image tower's "
                        "60), text (the text tower's 30), or attacks separated by ';' ('forget-k5 adam tower "
                        "lr=1e-05;retain sgd lora lr=0.0001')")
    p.add_argument("--relearn-steps", default="5,25,100", help="steps at which each relearning curve is read")
    p.add_argument("--cache-dir", default=None, help="a folder for the original's and the oracle's relearning "
                                                     "curves, shared by audits of the same class")
    p.add_argument("--data-root", default=None, help="default: the run's data root, else $CLIPUNLEARN_DATA")
    _dataset_dir_arg(p, of_run=True)
    p.add_argument("--seed", type=int, default=0)
    _precision_arg(p, what="; the audit computes on the CPU")
    p.add_argument("--out", default=None, help="the audit's folder (default RUN/audit): another audit of the same run "
                                               "beside the first, e.g. --relearning text")
    p.add_argument("--overwrite", action="store_true", help="replace the audit's folder if it exists")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_audit)


def _add_subgroups(sub: argparse._SubParsersAction) -> None:
    """clipunlearn subgroups: the shipped subgroup settings."""
    p = sub.add_parser("subgroups", help="list the shipped subgroup settings (CVPR'25 in-domain, cross-domain)")
    p.set_defaults(func=cmd_subgroups)


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    """clipunlearn benchmark: run a suite's cells through an executor."""
    p = sub.add_parser("benchmark", help="run a benchmark suite (cells of model x method x class x seed), resumable")
    p.add_argument("--suite", required=True, help="a shipped suite (quick) or a .toml suite file")
    p.add_argument("--out", required=True, help="folder of the suite's run folders; rerunning skips finished cells")
    p.add_argument("--model", default=None, help="run the suite on these models instead (comma-separated)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--executor", default="local", help="local (one cell at a time), process (a worker pool), "
                   "ray (Ray tasks; pip install -e '.[distributed]') or slurm (a SLURM job array via submitit)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for --executor process")
    p.add_argument("--cpus-per-cell", type=int, default=None, metavar="N",
                   help="CPUs (torch threads) per cell: process (default cores / workers), ray and slurm (default 1)")
    p.add_argument("--gpus-per-cell", type=float, default=0.0, metavar="F",
                   help="GPUs per cell, cells then run on cuda: ray (0.25 lets four cells share a GPU), slurm (whole)")
    p.add_argument("--max-retries", type=int, default=1, metavar="N",
                   help="ray, slurm: run a cell again when its worker or job died (default 1)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="ray: join this Ray cluster (e.g. auto, ray://head:10001); default: start one here")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-time-min", type=int, default=60, metavar="MIN", help="slurm: time limit of a cell's job")
    p.add_argument("--slurm-folder", default=None, help="slurm: submitit's scripts and logs (default OUT/slurm)")
    p.add_argument("--slurm-cluster", default="slurm", help=argparse.SUPPRESS)  # local / debug: test without SLURM
    p.add_argument("--retry-failed", action="store_true", help="run the cells that failed before again")
    p.add_argument("--seeds", default=None, metavar="0,1", help="run only the cells of these seeds")
    p.add_argument("--tables", default=None, metavar="A,B",
                   help="run only these tables' cells (the report still lays out every table)")
    p.add_argument("--rerun-stale", action="store_true",
                   help="run again the done cells whose preset has changed since (old folders kept in OUT/stale/)")
    p.add_argument("--dry-run", action="store_true", help="list the cells, done and to run, and run nothing")
    p.add_argument("--save-models", choices=("changed", "full"), default="changed",
                   help="each cell's model.safetensors: the tensors it changed (default; loaded on the suite's "
                        "model by load_clip, the audit and merges) or every tensor")
    p.add_argument("--device", default="cpu")
    _precision_arg(p, None, "; default: the suite's (auto unless its file sets precision)")
    _track_arg(p, "OUT")
    p.set_defaults(func=cmd_benchmark)


def _add_benchmark_report(sub: argparse._SubParsersAction) -> None:
    """clipunlearn benchmark report DIR (benchmark-report): tables and plots."""
    p = sub.add_parser("benchmark-report", help="tables and plots of a suite's folder (also: benchmark report DIR)")
    p.add_argument("folder", help="the --out folder of clipunlearn benchmark")
    p.add_argument("--to", default=None, help="write report.md, tables/ and plots/ here instead of into the folder")
    p.add_argument("--records", action="store_true",
                   help="also copy suite.json and each run's results.json to TO/records/, from which the page can be "
                        "rebuilt and the suite resumed elsewhere")
    p.set_defaults(func=cmd_benchmark_report)


def _add_benchmark_status(sub: argparse._SubParsersAction) -> None:
    """clipunlearn benchmark status DIR (benchmark-status): where a suite stands."""
    p = sub.add_parser("benchmark-status", help="a suite folder's cells done, failed, stale and to run, and the "
                                                "seconds the done ones took (also: benchmark status DIR)")
    p.add_argument("folder", help="the --out folder of clipunlearn benchmark")
    p.add_argument("--cells", action="store_true", help="list every cell with its state (and seconds)")
    p.add_argument("--tables", default=None, help="the cells of these tables only (comma-separated names, as in "
                                                  "clipunlearn benchmark --tables)")
    p.add_argument("--seeds", default=None, help="the cells of these seeds only (comma-separated, e.g. 1,2)")
    p.set_defaults(func=cmd_benchmark_status)


def _add_query(sub: argparse._SubParsersAction) -> None:
    """clipunlearn query DIR SQL: SQL over every run."""
    p = sub.add_parser("query", help="SQL over every run under a folder (DuckDB; the table runs: one row per run)",
                       description="Run SQL over one flat view of every run folder under FOLDER, the table 'runs' "
                                   "(columns: docs/benchmark.md, Query every run). Needs pip install -e \".[query]\".")
    p.add_argument("folder", help="a suite's --out folder, a report's records/ folder, a folder of runs or one run")
    p.add_argument("sql", help="e.g. \"SELECT method, avg(target_after) FROM runs GROUP BY method\"")
    p.add_argument("--to", default=None, metavar="FILE", help="also write the answer to FILE (.parquet or .csv)")
    p.add_argument("--force", "--overwrite", dest="force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_query)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    """clipunlearn demo: forget one class from mini-rn."""
    p = sub.add_parser("demo", help="forget one class from mini-rn and print the before/after table (minutes, CPU)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None, help="run folder (default: a new temporary folder)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)


#: the verbs in the order `clipunlearn --help` lists them
_VERBS = (_add_layers, _add_eval, _add_zoo, _add_listings, _add_generate, _add_forget, _add_merge, _add_audit,
          _add_subgroups, _add_benchmark, _add_benchmark_report, _add_benchmark_status, _add_query, _add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipunlearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _VERBS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs "random init" warnings on the root logger
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["benchmark", "report"]:  # `clipunlearn benchmark report DIR`
        argv = ["benchmark-report", *argv[2:]]
    if argv[:2] == ["benchmark", "status"]:  # `clipunlearn benchmark status DIR`
        argv = ["benchmark-status", *argv[2:]]
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ClipUnlearnError as e:
        print(f"clipunlearn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clipunlearn: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `clipunlearn ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
