"""Drop reports: the agent logs its engine's drops once per interval, not once per packet.

zigi-vm1 sends a burst of frames with a foreign source address. host-1's engine drops and counts
each (`spoofed_source`); the first drop opens a 10 s interval (the engine's timer, driven by the
agent's data-path thread through `poll_timeout`/`handle_timeout`), and when it closes the agent
logs one "the data path dropped packets" line: the counts per reason and the first dropped
packet, dissected. So a burst of 50 drops is one line, about 10 s later, not 50 lines.
"""

import re
import time

import frames as fr
from e2e_harness import STATE_DIR, metric_sum

BURST = 50
INTERVAL = 10.0
REPORT = "the data path dropped packets"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _report_lines():
    log = STATE_DIR / "logs" / "agent-host-1.log"
    text = ANSI.sub("", log.read_text(errors="replace"))
    return [line for line in text.splitlines() if REPORT in line]


def _all_drops(lab):
    return metric_sum(lab.metrics("host-1"), "softvpc_drops_total")


def test_a_burst_of_drops_is_one_report_after_the_interval(lab, macs):
    # Earlier tests drop packets too: once host-1 has dropped nothing for longer than the
    # interval, no interval is open and the burst below opens its own.
    total, quiet_since, give_up = _all_drops(lab), time.monotonic(), time.monotonic() + 60
    while time.monotonic() - quiet_since < INTERVAL + 1:
        assert time.monotonic() < give_up, "host-1 never stopped dropping for 11 s"
        time.sleep(0.5)
        now_total = _all_drops(lab)
        if now_total != total:
            total, quiet_since = now_total, time.monotonic()

    before = _report_lines()
    drops_before = lab.drops("host-1", "spoofed_source")
    burst = [fr.udp_frame(macs["zigi-vm1"], macs["zigi-vm2"], "10.0.0.99", "10.0.0.185",
                          f"svt-report-{i}".encode()) for i in range(BURST)]
    sent = time.monotonic()
    lab.send_frames("zigi-vm1", burst)
    assert lab.drops("host-1", "spoofed_source") - drops_before == BURST

    new = []
    while time.monotonic() < sent + INTERVAL + 10:
        new = _report_lines()[len(before):]
        if new:
            break
        time.sleep(0.2)
    waited = time.monotonic() - sent
    assert new, f"no drop report within {INTERVAL + 10} s"
    # Not before the interval closed (the first drop came after `sent`).
    assert waited >= INTERVAL - 0.5, f"reported after {waited:.1f} s: {new}"
    time.sleep(1)
    new = _report_lines()[len(before):]
    assert len(new) == 1, f"one burst, {len(new)} reports: {new}"
    line = new[0]
    assert f"spoofed_source={BURST}" in line, line
    assert "first=spoofed_source" in line, line
    assert "src=10.0.0.99 dst=10.0.0.185" in line, line
