"""Benchmark of the screening engine (issue 3, item 9). Run: python bench/screening.py

Builds its own corpus from the rule packs' own examples (no third-party text), then measures
in one run — alternating the contenders, several rounds, reporting medians:
  * raw jieba segmentation of the whole corpus (jieba.lcut, the usual baseline);
  * the engine (screen()) with each installed segmenter backend;
  * the engine with 100 / 1,000 / 10,000 generated rules added to the real packs;
  * whole processes: `kepu rules scan FILE` (one process, and one per CPU) against
    `jieba.lcut` of the same file;
  * the resident memory of a process with the engine loaded.
It prints characters per second and the ratios, and checks that the backends give identical
findings. Nothing here is asserted as a timing test.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rules import Ruleset, load_ruleset, screen, segments_from_text  # noqa: E402
from rules.ruleset import PACK_DIR  # noqa: E402
from rules.segmenter import rjieba_available  # noqa: E402

CATEGORIES = ["夸大疗效", "伪机理", "食品谣言", "伪权威", "恐慌与标题党"]


SUBJECTS = [
    "市民",
    "游客",
    "学生",
    "工程师",
    "志愿者",
    "社区工作人员",
    "老师",
    "讲解员",
    "研究团队",
    "图书馆员",
    "摄影爱好者",
    "游泳队员",
    "骑行爱好者",
    "家长",
    "孩子们",
    "设计师",
    "农技人员",
    "护林员",
    "气象观测员",
    "地铁司机",
]
WHEN = [
    "周末",
    "上午",
    "傍晚",
    "国庆期间",
    "昨天下午",
    "今年春天",
    "入冬以来",
    "开学第一周",
    "假期里",
    "每天清晨",
]
PLACES = [
    "在新建的城市公园",
    "在市图书馆",
    "在科技馆",
    "在滨海步道",
    "在老城区",
    "在植物园",
    "在社区活动中心",
    "在大学校园",
    "在湿地公园",
    "在博物馆",
]
ACTS = [
    "参观了天文展览",
    "讨论了桥梁的设计",
    "观察了白鹭筑巢",
    "学习了垃圾分类",
    "体验了消防演练",
    "搭建了简易气象站",
    "测量了河水的流速",
    "记录了植物的花期",
    "完成了一次徒步",
    "参加了编程比赛",
    "练习了急救技能",
    "整理了旧书",
    "制作了太阳能小车",
    "拍摄了星空照片",
]
ENDS = [
    "。",
    "，大家都很有收获。",
    "，气氛十分热烈。",
    "，还做了详细的笔记。",
    "，活动持续了两个小时。",
]


def neutral_sentence(rng: random.Random) -> str:
    """A made-up everyday sentence that mentions no rule term."""
    return (
        rng.choice(SUBJECTS)
        + rng.choice(WHEN)
        + rng.choice(PLACES)
        + rng.choice(ACTS)
        + rng.choice(ENDS)
    )


def check_neutral(ruleset: Ruleset) -> None:
    """The everyday sentences must stay free of anchor terms as the packs grow: otherwise
    the corpus silently gets denser in candidate sentences than it claims to be."""
    for part in (*SUBJECTS, *WHEN, *PLACES, *ACTS, *ENDS):
        found = ruleset.anchor_index.present(part)
        if found:
            raise SystemExit(f"bench corpus: {part!r} contains rule anchor terms {sorted(found)}")


def build_corpus(ruleset: Ruleset, chars: int, seed: int = 7) -> list[str]:
    """Documents of ~1,500 characters: 70% made-up everyday sentences, 25% the packs'
    must_pass examples (which mention rule terms), 5% must_flag examples (claims)."""
    check_neutral(ruleset)
    rng = random.Random(seed)
    neutral = [t for r in ruleset.rules for t in r.must_pass]
    claims = [t for r in ruleset.rules for t in r.must_flag]
    docs: list[str] = []
    total = 0
    while total < chars:
        parts: list[str] = []
        size = 0
        while size < 1500:
            roll = rng.random()
            if roll < 0.05:
                sentence = rng.choice(claims)
            elif roll < 0.30:
                sentence = rng.choice(neutral)
            else:
                sentence = neutral_sentence(rng)
            parts.append(sentence)
            size += len(sentence)
            if rng.random() < 0.15:
                parts.append("\n")
        doc = "".join(parts)
        docs.append(doc)
        total += len(doc)
    return docs


def _rare_term(rng: random.Random) -> str:
    return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.choice((3, 4))))


def generated_ruleset(count: int, workdir: Path, seed: int = 11) -> Ruleset:
    """The real packs plus `count` generated two-group rules in an extra pack file."""
    target = workdir / f"packs_{count}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACK_DIR, target)
    rng = random.Random(seed + count)
    lines = ['pack = "generated"', 'description = "基准测试生成的规则"', ""]
    for i in range(count):
        a, b = _rare_term(rng), _rare_term(rng)
        lines += [
            "[[rule]]",
            f'id = "gen.r{i}"',
            "version = 1",
            f'title = "生成规则{i}"',
            f'category = "{CATEGORIES[i % len(CATEGORIES)]}"',
            'domains = ["医学健康"]',
            'severity = "medium"',
            f'pattern = {{ all = [["{a}"], ["{b}"]], window = 8 }}',
            'explanation = "基准测试用的生成规则。"',
            f'must_flag = ["{a}{b}"]',
            'must_pass = ["今天天气很好。"]',
            "",
        ]
    (target / "zz_generated.toml").write_text("\n".join(lines), encoding="utf-8")
    return load_ruleset(target)


def engine_runner(ruleset: Ruleset, docs: list[str], backend: str) -> Callable[[], object]:
    segmented = [segments_from_text(d) for d in docs]

    def run() -> object:
        return [screen(s, ruleset, segmenter=backend) for s in segmented]

    return run


def jieba_runner(docs: list[str]) -> Callable[[], object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    text = "\n".join(docs)

    def run() -> object:
        return jieba.lcut(text)

    return run


def measure(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall time per contender; contenders alternate within each round."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def process_times(contenders: dict[str, list[str]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time (user + system, forked children included) of
    whole processes — start-up, dictionary load and work — run alternately, round by round,
    so a change in the machine's load touches every contender alike. CPU time is the
    steadier figure on a shared machine."""
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, argv in contenders.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            walls[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[name].append(
                (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            )
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in contenders}


MEMORY_PROBE = """
import resource, sys
sys.path.insert(0, {root!r})
from rules import load_default_ruleset, screen, Segment
rs = load_default_ruleset()
screen([Segment("body", "这款茶能帮你排毒养颜。")], rs, segmenter={backend!r})
# VmHWM is per address space (reset by exec); ru_maxrss is inherited from the forking parent.
try:
    with open("/proc/self/status") as fh:
        print(next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000, help="in-process corpus size")
    parser.add_argument("--file-chars", type=int, default=3_000_000, help="whole-process file")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    base = load_ruleset()
    docs = build_corpus(base, args.chars)
    n_chars = sum(len(d) for d in docs)
    backends = ["jieba"] + (["rjieba"] if rjieba_available() else [])
    print(f"corpus: {len(docs)} documents, {n_chars:,} characters; rules: {len(base)}")
    print(f"backends: {', '.join(backends)}; rounds: {args.rounds} (medians)")

    # Identical findings across backends (on the whole corpus).
    if len(backends) == 2:
        segmented = [segments_from_text(d) for d in docs]
        a = [screen(s, base, segmenter="jieba") for s in segmented]
        b = [screen(s, base, segmenter="rjieba") for s in segmented]
        same = a == b
        hits = sum(len(r.findings) + len(r.suppressed) for r in a)
        print(f"backends identical: {'yes' if same else 'NO'} ({hits} findings compared)")
        if not same:
            return 1

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generated = {n: generated_ruleset(n, work) for n in (100, 1_000, 10_000)}
        fast = backends[-1]
        contenders: dict[str, Callable[[], object]] = {"jieba.lcut (raw)": jieba_runner(docs)}
        for backend in backends:
            contenders[f"engine/{backend}"] = engine_runner(base, docs, backend)
        for n, rs in generated.items():
            rs.segmenter(fast)  # build dictionaries outside the timed region
            contenders[f"engine/{fast} +{n:,} rules"] = engine_runner(rs, docs, fast)
        for backend in backends:
            base.segmenter(backend)
        medians = measure(contenders, args.rounds)

        print("\nin-process throughput (median)")
        raw = medians["jieba.lcut (raw)"]
        for name, seconds in medians.items():
            print(
                f"  {name:<32} {seconds:8.3f} s  {n_chars / seconds:>13,.0f} chars/s"
                f"  ×{raw / seconds:6.2f} vs raw jieba"
            )
        cost = medians[f"engine/{fast} +10,000 rules"] / medians[f"engine/{fast} +100 rules"]
        print(f"  cost 10,000 vs 100 generated rules: ×{cost:.2f}")

        big = work / "corpus.txt"
        file_docs = build_corpus(base, args.file_chars, seed=3)
        big.write_text("\n".join(file_docs), encoding="utf-8")
        size = big.stat().st_size
        file_chars = sum(len(d) for d in file_docs)
        jieba_proc = [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "import jieba,sys; jieba.setLogLevel(60); "
            "jieba.lcut(open(sys.argv[1], encoding='utf-8').read())",
            str(big),
        ]
        kepu = str(Path(sys.executable).parent / "kepu")
        cpus_here = os.cpu_count() or 1
        scan = [kepu, "rules", "scan", str(big), "--summary"]
        contenders = {
            "python -c jieba.lcut(file)": jieba_proc,
            "kepu rules scan FILE --jobs 1": [*scan, "--jobs", "1"],
            f"kepu rules scan FILE ({cpus_here} CPUs)": scan,
        }
        times = process_times(contenders, max(1, args.rounds))
        print(f"\nwhole processes on a {size / 1e6:.1f} MB file ({file_chars:,} characters),")
        print(f"alternating, median of {max(1, args.rounds)} rounds")
        print(f"  {'':38}{'wall':>9}{'cpu':>11}{'jieba/this wall':>17}{'cpu':>7}")
        j_wall, j_cpu = times["python -c jieba.lcut(file)"]
        for name, (wall, cpu) in times.items():
            print(f"  {name:38}{wall:8.2f}s{cpu:10.2f}s{j_wall / wall:16.2f}x{j_cpu / cpu:6.2f}x")

    for backend in backends:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE.format(root=str(ROOT), backend=backend)],
            check=True,
            capture_output=True,
            text=True,
        )
        rss_mib = int(out.stdout.strip().splitlines()[-1]) / 1024
        print(f"memory of a process with the engine loaded ({backend}): {rss_mib:.0f} MiB peak RSS")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this benchmark process: {own:.0f} MiB max RSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
