"""Allure reporting for pytest-sev: results a nightly regression can live on.

A nightly is only useful if a red run can be understood from the report
alone and compared with the nights before it. This package makes every run
leave a self-describing Allure results directory:

- ``resultsdir``: where results go by default (``reports/allure-results``),
  so nobody has to remember ``--alluredir``;
- ``environment``: ``environment.properties`` naming the host, firmware,
  QEMU, guest kernel, mode and runner the results came from;
- ``categories``: ``categories.json`` sorting failures by cause (host not
  ready, boot timeout, panic, SWIOTLB, corruption, QMP, build, harness);
- ``labels``: epic/feature/story/severity per suite and the runner as parent
  suite, so reports of several runners merge without collisions;
- ``hostattach``: the host readiness report attached to every host test;
- ``runner``: the runner name (``$SEV_RUNNER``, else the hostname);
- ``hookspecs``: ``pytest_sev_report_environment``, for other layers (e.g.
  component commits) to add environment entries;
- ``plugin``: the pytest hooks (its own pytest11 entry point, ``sev-report``).

``scripts/report.sh`` turns the results into HTML (Allure 3) and keeps the
history that trends are drawn from.
"""
