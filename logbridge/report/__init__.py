"""``logbridge report``: answers from a published store (DESIGN.md §3, issue 13).

    layout   the store's path template read backwards: which files a question needs
    events   the stored lines as one flat DuckDB relation (event time, node, user, …)
    kinds    the questions: last-activity, logins, api-usage, compute, failures, volume
    run      store URL → files → DuckDB → a `Table`
    render   table / CSV / JSON text;  html + svg: a self-contained page with charts
    command  the click command

DuckDB comes with the ``report`` extra (``pip install 'logbridge[report]'``).
"""
