"""Run records -> tidy DataFrames -> the papers' tables and figures. Reads files or W&B only;
never imports training code (runners/, optimizers/) nor torch.

    load.py          a source (folder, wandb:entity/project, wandb-offline:folder) -> Sweep
    wandb_source.py  W&B runs (public API or offline files) -> the same Sweep
    sweep.py         the Sweep: one row per run, one row per (run, step); problem and method
    quantities.py    the papers' training losses the runner does not log as such (epoch-end
                     EMA, K-BFGS objective), as Sweep columns
    papers.py        what each paper selects, plots and times, and its figures' methods
    selection.py     best setting per (problem, method) by a rule per problem, with the grid
    aggregate.py     median and band over seeds, aligned on epochs or training time
    targets.py       epochs and time to a target (inf when missed)
    profiles.py      Dolan-Moré performance profiles
    results.py       the chosen settings' runs (by the papers' rules by default) and their
                     times to target, for all outputs
    machine_load.py  runs whose machine was overloaded (their times are not to be trusted)
    tables.py        cost, results and profile tables (markdown, CSV); python -m analysis.tables
    figures/         named figures; python -m analysis.figures <name|all>
    report.py        one markdown page with every figure and table; python -m analysis.report
    compare.py       the quick table and figure of `make demo`: the report's numbers, short
    style.py         each method's name and colour, each problem's and metric's label
"""
