"""The audit's relearning grid, prototype attack and weight-space measure, on models whose answer is
known by construction, and the content cache of the original's and the oracle's relearning curves."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipunlearn.audit import audit_run
from clipunlearn.audit.attacks import prototype, relearning, weights
from clipunlearn.audit.case import load_case, read_run
from clipunlearn.audit.relearning import (
    GRID,
    GRIDS,
    HELD_OUT,
    TEXT_GRID,
    TUNING,
    Attack,
    draw_rows,
    related_classes,
    resolve_grid,
)
from clipunlearn.cli import main
from clipunlearn.errors import ClipUnlearnError

SMALL_GRID = (Attack.parse("forget-k1 adam tower lr=0.0001"), Attack.parse("related adam lora lr=0.001"))


def test_the_grid_and_its_split():
    assert len(GRID) == 60 and len(set(GRID)) == 60
    assert set(TUNING) <= set(GRID) and set(HELD_OUT) <= set(GRID)
    assert not set(TUNING) & set(HELD_OUT)  # no attack is both trained against and judged by
    assert {a.data for a in HELD_OUT} == {"forget-k1", "forget-k5", "forget-k10", "retain", "related"}
    assert {a.params for a in HELD_OUT} == {"tower", "lora"}
    for a in GRID:
        assert Attack.parse(a.name) == a
    assert resolve_grid("held-out") == HELD_OUT and resolve_grid([a.name for a in TUNING]) == TUNING
    assert GRIDS["full"] == GRID
    # the text tower's attacks came after the split: in neither set, nor in the image tower's grid
    assert len(TEXT_GRID) == 30 and GRIDS["text"] == TEXT_GRID and {a.params for a in TEXT_GRID} == {"text"}
    assert not set(TEXT_GRID) & (set(GRID) | set(TUNING) | set(HELD_OUT))
    assert all(Attack.parse(a.name) == a for a in TEXT_GRID)


@pytest.mark.parametrize("bad, match", [("nope", "Unknown relearning grid"), (["forget-k5 adam"], "not a relearning"),
                                        (["forget-k3 adam tower lr=1e-5"], "Unknown relearning data"),
                                        (["forget-k5 rmsprop tower lr=1e-5"], "Unknown relearning optimizer"),
                                        (["forget-k5 adam tower lr=x"], "not a number"), ([], "empty")])
def test_bad_grids_are_one_line_errors(bad, match):
    with pytest.raises(ClipUnlearnError, match=match):
        resolve_grid(bad)


def test_the_relearning_data_is_what_it_says(data_slice, lip_run):
    case = load_case(read_run(lip_run), None, str(data_slice), need_train=True)
    rows, labels = draw_rows(case), case.labels("train")
    target = case.targets[0]
    for k in (1, 5, 10):  # k images of the class (fewer where the split has fewer), nothing else
        assert set(labels[rows[f"forget-k{k}"]]) == {target}
        assert len(rows[f"forget-k{k}"]) == min(k, int((labels == target).sum()))
    assert target not in set(labels[rows["retain"]])  # retain-only: never an image of the class
    assert set(labels[rows["retain"]]) == set(np.unique(labels)) - {target}
    related = related_classes(case)
    assert target not in related and set(labels[rows["related"]]) == set(related)
    w = case.classifier("original")  # the nearest classes by the original's class weights, checked by hand
    sims = {c: float(w[target] @ w[c]) for c in range(len(case.classnames)) if c != target}
    assert related == sorted(sims, key=sims.get, reverse=True)[:len(related)]
    assert draw_rows(case) == rows  # seeded


def test_curves_of_the_original_and_the_oracle_are_cached_by_content(data_slice, lip_run, tmp_path):
    cache, one = tmp_path / "cache", SMALL_GRID[:1]
    oracle = lip_run / "model.safetensors"

    def audit(name, steps, with_oracle=True):
        return audit_run(lip_run, oracle=oracle if with_oracle else None, attacks="relearning",
                         data_root=str(data_slice), out=tmp_path / name, relearning=one, relearn_steps=steps,
                         cache_dir=cache)["results"]["relearning"]

    r1 = audit("a1", (1,))
    assert r1["computed"] == {"original": 1, "forgotten": 1, "oracle": 1}
    assert len(list((cache / "relearning").glob("*.json"))) == 2  # the original's and the oracle's, not the run's
    r2 = audit("a2", (1,))
    assert r2["computed"] == {"original": 0, "forgotten": 1, "oracle": 0}
    assert r2["curves"] == r1["curves"]  # computed anew, the forgotten model's curves are the same: seeded
    # the oracle is the forgotten model itself: R is 0 by construction (or undefined without a gap)
    assert r1["curves"]["oracle"] == r1["curves"]["forgotten"]
    assert r1["score"]["R"] is None or r1["score"]["R"] == pytest.approx(0.0)
    other = audit("a3", (2,), with_oracle=False)
    assert other["computed"]["original"] == 1  # other steps: another key
    # no oracle: only the floor, R against accuracy 0 = the forgotten curve's area over the original's
    curves = {m: other["curves"][m][one[0].name] for m in ("original", "forgotten")}
    area = {m: np.trapezoid(c) / (len(c) - 1) for m, c in curves.items()}  # readings at steps 0 and 2
    assert other["score"]["R"] is None and other["score"]["with_oracle"] is False
    assert area["original"] > 0.5  # the zoo model knows the class: the floor is defined
    assert other["score"]["R_floor"] == pytest.approx(area["forgotten"] / area["original"])


def test_the_cli_takes_a_grid_and_steps(data_slice, lip_run, tmp_path, capsys):
    out = tmp_path / "run"
    import shutil

    shutil.copytree(lip_run, out)
    assert main(["audit", str(out), "--attacks", "relearning", "--relearning",
                 "forget-k1 adam tower lr=1e-4;retain sgd tower lr=1e-4", "--relearn-steps", "1,2",
                 "--data-root", str(data_slice), "--quiet"]) == 0
    audit = json.loads((out / "audit" / "audit.json").read_text())
    assert audit["relearning_grid"] == ["forget-k1 adam tower lr=0.0001", "retain sgd tower lr=0.0001"]
    assert audit["results"]["relearning"]["steps"] == [0, 1, 2]
    assert "relearning" in capsys.readouterr().out
    assert main(["audit", str(out), "--attacks", "relearning", "--relearn-steps", "5,x", "--overwrite",
                 "--data-root", str(data_slice), "--quiet"]) != 0
    assert "--relearn-steps takes whole numbers" in capsys.readouterr().err
    # a second audit beside the first (--out): a text attack, the run's own audit left as it was
    first = (out / "audit" / "audit.json").read_bytes()
    assert main(["audit", str(out), "--attacks", "relearning", "--relearning", "forget-k1 adam text lr=1e-4",
                 "--relearn-steps", "1", "--out", str(tmp_path / "text"), "--data-root", str(data_slice), "--quiet"]) == 0
    assert f"audit written to {tmp_path / 'text'}" in capsys.readouterr().out
    text = json.loads((tmp_path / "text" / "audit.json").read_text())
    assert text["relearning_grid"] == ["forget-k1 adam text lr=0.0001"] and text["run"]["folder"] == "../run"
    assert (out / "audit" / "audit.json").read_bytes() == first
    assert main(["audit", str(out), "--attacks", "relearning", "--out", str(tmp_path / "text"),
                 "--data-root", str(data_slice), "--quiet"]) != 0  # never overwritten unasked
    assert "--overwrite" in capsys.readouterr().err


def _blind(case, other: int):
    """A copy of the original whose image tower maps every image to one point (another class's text)."""
    from clipunlearn.evaluation import zero_shot_classifier

    blind = copy.deepcopy(case.models["original"])
    row = zero_shot_classifier(blind, case.classnames, [case.template])[other]
    with torch.no_grad():
        blind.model.visual.attnpool.c_proj.weight.zero_()
        blind.model.visual.attnpool.c_proj.bias.copy_(row)
    return blind


def test_prototypes_of_an_unchanged_and_of_a_blind_model(data_slice, lip_run):
    case = load_case(read_run(lip_run), None, str(data_slice), need_train=True)
    case.models["forgotten"] = case.models["original"]
    r = prototype(case)
    for k in r["accuracy"]:
        assert r["accuracy"][k]["forgotten"] == r["accuracy"][k]["original"]
    # by hand, k = 1: each class's prototype is the feature of the first image of its seeded draw
    labels, feats = case.labels("train"), case.features("original", "train")
    gen = np.random.default_rng(case.seed + 1)
    classes = sorted(set(labels.tolist()))
    firsts = [gen.permutation(np.flatnonzero(labels == c))[0] for c in classes]
    protos = F.normalize(feats[firsts], dim=-1)
    target = case.is_target("test")
    pred = np.asarray(classes)[(case.features("original", "test")[target] @ protos.T).argmax(1).numpy()]
    assert r["accuracy"]["1"]["original"] == pytest.approx(float((pred == case.targets[0]).mean()))
    other = next(c for c in range(len(case.classnames)) if c not in case.targets)
    blind_case = load_case(read_run(lip_run), None, str(data_slice), need_train=True)
    blind_case.models["forgotten"] = _blind(blind_case, other)
    rb = prototype(blind_case)  # every feature equal: every prototype equal, the first class wins every tie
    expected = float(case.targets[0] == classes[0])
    assert all(rb["accuracy"][k]["forgotten"] == expected for k in rb["accuracy"])


def test_weights_of_an_unchanged_and_of_a_changed_model(data_slice, lip_run):
    case = load_case(read_run(lip_run), None, str(data_slice), need_train=True)
    case.models["forgotten"] = case.models["original"]
    same = weights(case)
    assert same["touched"] == 0 and same["l2"] == 0.0 and same["path"]["loss_target"] == []
    moved = copy.deepcopy(case.models["original"])
    w = moved.model.visual.attnpool.c_proj.weight
    with torch.no_grad():
        w.add_(0.01)
    case.models["forgotten"] = moved
    r = weights(case)
    assert r["touched"] == 1 and r["touched_tensors"] == ["visual.attnpool.c_proj.weight"]
    assert r["l2"] == pytest.approx(0.01 * np.sqrt(w.numel()), rel=1e-4)
    orig = case.models["original"].model.visual.attnpool.c_proj.weight
    assert r["relative_l2"] == pytest.approx(r["l2"] / float(orig.norm()), rel=1e-4)
    assert set(r["l2_per_tower"]) == {"image"}
    # at α = 0 the path is the original: its loss on the class's images is the original's zero-shot CE
    rows = case.is_target("test")
    logits = torch.as_tensor(case.logits("original", "test")[rows])
    ce = float(F.cross_entropy(logits, torch.as_tensor(case.labels("test")[rows])))
    assert r["path"]["loss_target"][0] == pytest.approx(ce, rel=1e-4)
    assert len(r["path"]["loss_others"]) == len(r["path"]["alphas"]) == 5


def test_relearning_r_of_the_original_audited_as_forgotten(data_slice, lip_run):
    """The original audited as if it were the forgotten model, beside a blind oracle: R is 1."""
    case = load_case(read_run(lip_run), None, str(data_slice), need_train=True, relearn_grid=SMALL_GRID,
                     relearn_steps=(1, 2))
    other = next(c for c in range(len(case.classnames)) if c not in case.targets)
    case.models["forgotten"] = case.models["original"]
    case.models["oracle"] = _blind(case, other)
    r = relearning(case)
    assert r["curves"]["forgotten"] == r["curves"]["original"]
    assert r["score"]["R"] == pytest.approx(1.0) and r["score"]["R_floor"] == pytest.approx(1.0)


def test_a_text_attack_trains_the_text_tower_as_a_hand_written_loop_does(data_slice, lip_run):
    """The text attack against an independent reference: plain SGD (momentum 0.9) on a copy's text tower,
    the image features fixed, the class weights recomputed from the prompts at every step."""
    import dataclasses

    from clipunlearn.audit.attacks import _load_pixels
    from clipunlearn.audit.relearning import RelearnData, relearn_curve

    case = load_case(read_run(lip_run), None, str(data_slice), need_train=True)
    clip = case.models["original"]
    rows = draw_rows(case)["forget-k5"]  # the class's images, labelled as another class: the curve must fall
    other = next(c for c in range(len(case.classnames)) if c not in case.targets)
    data = RelearnData(_load_pixels(case, "train", rows), torch.full((len(rows),), other), rows)
    test_rows = np.flatnonzero(case.is_target("test"))
    test_px, test_y = _load_pixels(case, "test", test_rows.tolist()), case.labels("test")[test_rows]
    prompts = [case.template.format(c) for c in case.classnames]
    attack = Attack.parse("forget-k5 sgd text lr=0.1")
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    curve = relearn_curve(clip, attack, data, test_px, test_y, case.classifier("original"), (1, 5), 0, prompts)
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())  # the model is left alone

    ref = dataclasses.replace(clip, model=copy.deepcopy(clip.model))
    ref.model.eval()
    text_params = [p for n, p in ref.model.named_parameters() if not n.startswith("visual.")]
    for n, p in ref.model.named_parameters():
        p.requires_grad_(not n.startswith("visual."))
    with torch.no_grad():
        feats = F.normalize(ref.encode_image(data.pixels).float(), dim=-1)
        test_feats = F.normalize(ref.encode_image(test_px).float(), dim=-1)
    opt = torch.optim.SGD(text_params, lr=0.1, momentum=0.9)

    def accuracy() -> float:
        with torch.no_grad():
            w = F.normalize(ref.encode_text(prompts).float(), dim=-1)
        return float(((test_feats @ w.T).argmax(1).numpy() == test_y).mean())

    expected = [accuracy()]
    for step in range(1, 6):  # five images: one batch, the same every step
        w = F.normalize(ref.encode_text(prompts).float(), dim=-1)
        loss = F.cross_entropy(100.0 * feats @ w.T, data.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (1, 5):
            expected.append(accuracy())
    assert curve == pytest.approx(expected) and expected[-1] != expected[0], expected  # it moved, as the reference did
    assert expected[0] == pytest.approx(relearn_curve(clip, Attack.parse("forget-k5 sgd tower lr=0.01"), data, test_px,
                                                       test_y, case.classifier("original"), (1,), 0)[0])
    with pytest.raises(ClipUnlearnError, match="needs one prompt per class"):
        relearn_curve(clip, attack, data, test_px, test_y, case.classifier("original"), (1,), 0)
