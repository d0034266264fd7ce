"""The commands of `ponder`, one module each, all in one shape.

A command module holds:
  - `Config`: a dataclass whose fields, each with a docstring, are the command's options (the
    command line is generated from it; a YAML file sets the same fields);
  - `run(cfg) -> result`: checks every input before it writes anything, then does the work
    and writes the run directory (`ponder.runs.start_run` refuses a rerun with other options);
  - optionally `show(result, console)`: how the terminal presents the result.

The module's docstring is the command's help. `ALL` lists every command explicitly, so a
command cannot silently go missing from the command line; `EXPORT` lists the subcommands of
`ponder export` by the name each takes there (`ponder export verl`).
"""
from ponder.commands import (
    annotate,
    demo,
    dpo,
    eval,
    eval_rm,
    export_verl,
    generate,
    iterate,
    report,
    rl,
    scale,
    search,
    serve,
    sft,
    tasks,
    train_rm,
)

ALL = [tasks, sft, eval, generate, demo, annotate, train_rm, eval_rm, search, scale, rl, dpo, iterate, serve,
       report]
EXPORT = {"verl": export_verl}
