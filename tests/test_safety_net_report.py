"""Safety net for the HTML report (bug 12: `| safe` on the workload heading or the control prescription).

Workload names are validated by a regex in the experiment config, so the findings are built directly
from the pydantic models, with markup in every string the template shows from the experiment. No
finding has loads, histograms or server acceptance, so no plot is drawn and the test stays fast.
"""

from __future__ import annotations

from specwise.experiment import ControlResult, Finding, Findings
from specwise.report import html
from specwise.verdict import Decision, Verdict

WORKLOAD = "<script>alert(1)</script><b>bold-workload</b>"
PRESCRIPTION = "specwise bench <script>alert(2)</script> <b>bold-prescription</b>"


def findings() -> Findings:
    verdict = Verdict(decision=Decision.INCONCLUSIVE, headline="h", rules=[])
    finding = Finding(candidate="spec", workload=WORKLOAD, temperatures="0:1,1:1", load_unit="concurrency", loads=[],
                      control=ControlResult(workload="chat-control", load=8.0, prescription=PRESCRIPTION),
                      verdict=verdict)
    return Findings(experiment="exp", load_unit="concurrency", findings=[finding])


def test_bug12_workload_heading_is_escaped():
    """Bug 12: the workload name appears only escaped (&lt;script&gt;), in the banner and in its heading."""
    page = html(findings())
    assert "<script" not in page and "<b>bold-workload</b>" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold-workload&lt;/b&gt;"
    assert f"<h2>Workload {escaped}</h2>" in page
    assert page.count(escaped) >= 2  # banner + heading


def test_bug12_control_prescription_is_escaped():
    """Bug 12: the prescribed control command appears only escaped, inside its <code> element."""
    page = html(findings())
    assert "alert(2)</script>" not in page and "<b>bold-prescription</b>" not in page
    assert ("<code>specwise bench &lt;script&gt;alert(2)&lt;/script&gt; &lt;b&gt;bold-prescription&lt;/b&gt;</code>"
            in page)
