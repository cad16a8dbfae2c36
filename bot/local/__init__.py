"""What the demo and the tests run on, apart from the product: a loopback Slack
(``slack``), the request forger (``payloads``), the demo BARQ schema and data
(``barq_schema``), the demo settings (``demo``), the console (``console``,
``console_render``) and the launcher of ``barq-bot`` as a process (``process``).

The product (``bot/`` outside this package) imports nothing from here, except
``bot/cli.py`` lazily for ``barq-bot shell --demo``.
"""
