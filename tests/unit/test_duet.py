"""benchmarks/duet.py's table: pairs in, each mode's spread, change and paired rule out (the
measuring part boots real guests: docs/benchmarks.md)."""

import math
import random

from benchmarks.duet import mde_pct, table


def _pairs(mode, sd, rng, n=6):
    out = []
    for i in range(n):
        host = math.exp(rng.gauss(0, 0.3))          # the host moves both boots of a pair
        base = 1000 * host
        new = 500 * host * math.exp(rng.gauss(0, sd))
        out.append({"mode": mode, "pair": i, "base": [base * 0.99, base, base * 1.01],
                    "new": [new * 0.99, new, new * 1.01], "wall_s": 40.0})
    return out


def test_the_table_gives_each_mode_its_spread_and_verdict():
    rng = random.Random(3)
    lines = _pairs("duet", 0.02, rng) + _pairs("alternate", 0.15, rng)
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in table(lines).splitlines()[2:]}
    duet, alt = rows["duet"], rows["alternate"]
    assert float(duet[3].rstrip("%")) < float(alt[3].rstrip("%"))      # spread of a pair's log ratio
    assert duet[5].startswith("bad") and -55 < float(duet[4].rstrip("%")) < -45
    assert float(duet[6].rstrip("%")) < float(alt[6].rstrip("%"))
    # a mode with fewer than two complete pairs has no row
    assert "duet" not in table([dict(lines[0], new=[])] + lines[6:])


def test_mde_falls_with_pairs_and_rises_with_spread():
    assert mde_pct(0.1, 1) is None
    assert mde_pct(0.1, 8) < mde_pct(0.1, 3) < mde_pct(0.2, 3) < 100
