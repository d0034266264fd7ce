"""One seed scheme (ponder.seeds.derive) and the claim it exists for: a problem's samples are
a function of the run's seed and the problem alone, never of the chunk, batch or worker it is
drawn in. Checked once here for the three sampling paths that shard work (evaluation, the
solutions that reward-model evaluation and the demo score, and search): the problems drawn
together, one by one and in reverse order give the same records."""
from __future__ import annotations

import pytest

from ponder.seeds import derive


def test_derive_is_a_stable_well_mixed_function_of_its_parts():
    assert derive(0, "rollout", 3, 1) == derive(0, "rollout", 3, 1)
    seeds = {derive(1, 23), derive(12, 3), derive(1, "23"), derive(123), derive(23, 1), derive(1, 23, 0)}
    assert len(seeds) == 6  # order, grouping, types and length all count
    many = {derive(7, "sample", i, j) for i in range(100) for j in range(100)}
    assert len(many) == 10_000 and all(0 <= s < 2**62 for s in many)
    import numpy as np

    assert derive(np.int64(5), "x") == derive(5, "x")
    assert derive(-1, "x") != derive(1, "x")


@pytest.mark.parametrize("bad", [1.5, None, (1, 2), True])
def test_derive_refuses_what_is_not_an_int_or_a_string(bad):
    with pytest.raises(TypeError, match="ints or strings"):
        derive(0, bad)
    with pytest.raises(ValueError, match="at least one part"):
        derive()


def test_a_problems_samples_do_not_depend_on_who_draws_it(tiny_dir):
    from ponder.eval import EvalConfig
    from ponder.eval.evaluate import evaluate_chunk
    from ponder.eval.rm import sample_solutions
    from ponder.generation import make_engine
    from ponder.search import SearchContext, SearchParams
    from ponder.search.driver import search_all
    from ponder.tasks import get_task

    task = get_task("arith", instruction=False)
    problems = task.problems("test", n=5, seed=0)
    engine = make_engine("torch", str(tiny_dir))
    cfg = EvalConfig(n=5, k=3, temperature=1.0, max_tokens=10, seed=3)

    def evaluated(group):
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in evaluate_chunk(engine, task, group, cfg)["records"]]

    def solutions(group):
        s = sample_solutions(engine, task, group, 3, 1.0, 10, seed=3)
        return [(p.id, t) for p, t in zip(s.problems, s.texts)]

    def searched(group):
        ctx = SearchContext(engine, task, None)
        out = search_all("majority", ctx, group, SearchParams(n=3, temperature=1.0, max_tokens=10, seed=3))
        return [{**r, "compute": {k: v for k, v in r["compute"].items() if k != "wall_s"}} for r in out["records"]]

    for draw in (evaluated, solutions, searched):
        together = draw(problems)
        alone = [x for p in problems for x in draw([p])]
        backwards = draw(problems[::-1])[::-1]
        assert together == alone == backwards, draw.__name__
        assert len({str(x) for x in together}) == len(problems)  # and the problems do not share samples
