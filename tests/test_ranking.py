"""The one ranking rule: fittest first, then the earlier generation, then the smaller chromosome id."""

import numpy as np
import pandas as pd

from neuroevo.analysis import report
from neuroevo.evolve import ranking, selection


def test_ties_go_to_the_earlier_generation_then_the_smaller_id():
    fitness = [0.5, 0.9, 0.5, 0.5, 0.5]
    generation = [2, 3, 1, 1, 2]
    ids = ["a", "z", "c", "b", "0"]
    assert ranking.order(fitness, generation, ids).tolist() == [1, 3, 2, 4, 0]
    assert ranking.order(fitness, chromosome_id=ids).tolist() == [1, 4, 0, 3, 2]  # one generation: id alone
    assert ranking.order(fitness).tolist() == [1, 0, 2, 3, 4]  # nothing else to go by: the given order
    assert ranking.order([]).tolist() == []


def test_within_one_generation_it_is_the_order_by_fitness_then_id():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        fitness = rng.choice([0.0, 0.1, 0.25, 0.5, rng.random()], size=n).tolist()  # many ties
        ids = [f"{x:012x}" for x in rng.choice(16**6, size=n, replace=False)]
        expected = sorted(range(n), key=lambda i: (-fitness[i], ids[i]))
        assert ranking.order(fitness, [7] * n, ids).tolist() == expected
        assert ranking.order(fitness, chromosome_id=ids).tolist() == expected
        assert selection.rank(list(range(n)), fitness, ids) == expected


def test_dataframe_columns_rank_as_lists_do():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"fitness": rng.choice([0.1, 0.2, 0.3], size=50), "generation": rng.integers(0, 4, size=50),
                       "chromosome_id": [f"{i:012x}" for i in rng.permutation(50)], "status": "ok"},
                      index=rng.permutation(50))
    order = ranking.order(df["fitness"], df["generation"], df["chromosome_id"])
    assert order.tolist() == ranking.order(df["fitness"].tolist(), df["generation"].tolist(),
                                           df["chromosome_id"].tolist()).tolist()
    by_pandas = df.sort_values(["fitness", "generation", "chromosome_id"], ascending=[False, True, True])
    assert df.iloc[order].index.tolist() == by_pandas.index.tolist()
    assert report.best(df).name == by_pandas.index[0]
    df.loc[by_pandas.index[0], "status"] = "failed"
    assert report.best(df).name == by_pandas.index[1]  # only chromosomes that trained
