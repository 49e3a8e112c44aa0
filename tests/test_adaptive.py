"Adaptive attacks on synthetic federations: coalition identification, the repaired view, coalition_sum = the clean aggregate."
from dataclasses import replace
import numpy as np
import pytest
import torch
from cofedmid.adaptive import AdaptiveRecorder, adaptive_uploads, identification
from cofedmid.attacks import attack_scores, evaluate
from cofedmid.cofedmid import CoFedMID
from cofedmid.data import synthetic_dataset
from cofedmid.fl import FedAvg, FLConfig
from cofedmid.partition import Federation, CandidatePool
from cofedmid.trajectory import ADAPTIVE_VIEWS

@pytest.fixture(scope='module')
def fed():
    torch.set_num_threads(1)
    data = synthetic_dataset(n_classes=4, n_train=5*48 + 96 + 32, n_test=64, size=8, signal=0.2, seed=1)
    f = Federation.split(data.y_train.numpy(), n_clients=5, size=48, n_ofl=96, n_val=32, seed=1)
    return data, f, CandidatePool.make(f, seed=1)

def test_coalition_sum_is_the_clean_weighted_aggregate(fed, monkeypatch):
    "With large Module-3 noise the server finds the coalition every round, and its coalition_sum is the members' clean mean."
    data, f, pool = fed
    clean, real = {}, CoFedMID.coordinate
    def spy(self, sim, rnd, uploads, weights):
        clean[rnd] = ({k: u.clone() for k, u in uploads.items()}, dict(weights))
        return real(self, sim, rnd, uploads, weights)
    monkeypatch.setattr(CoFedMID, 'coordinate', spy)
    seen = {}
    class Tap:                                   # what the server receives, per round
        def observe(self, sim, rnd, before, uploads, weights, after): seen[rnd] = ({k: u.clone() for k, u in uploads.items()}, dict(weights))
    rec = AdaptiveRecorder(pool, record_every=1, grad_signals=False)
    FedAvg(data, f, 'cnn', FLConfig(rounds=3, local_epochs=2, batch_size=16, progress=False),
           [CoFedMID([1, 2, 3], modules='m3', sigma=1.0, seed=0)], [rec, Tap()]).run()
    for rnd, (ups, w) in seen.items():
        views, info = adaptive_uploads(ups, w)
        assert info['members'] == [1, 2, 3]
        cu, cw = clean[rnd]
        tot = sum(cw[k] for k in (1, 2, 3))
        want = sum(cw[k]*cu[k].double() for k in (1, 2, 3))/tot
        torch.testing.assert_close(views['coalition_sum'][2].double(), want, atol=1e-5, rtol=1e-4)
        for v in ADAPTIVE_VIEWS: assert views[v][0] is ups[0] and views[v][4] is ups[4]
    assert all(r['precision'] == 1 and r['recall'] == 1 for r in identification(rec.found, [1, 2, 3]))

def test_evaluate_accepts_adaptive_views_and_says_what_is_missing(fed):
    data, f, pool = fed
    rec = AdaptiveRecorder(pool, record_every=1)
    FedAvg(data, f, 'cnn', FLConfig(rounds=2, local_epochs=2, batch_size=16, progress=False),
           [CoFedMID([1, 2], modules='m3', sigma=1.0, seed=0)], [rec]).run()
    tab, scores = evaluate(rec.traj, 1, views=('upload', *ADAPTIVE_VIEWS), nonmembers=('ofl',))
    assert set(tab.view) == {'upload', *ADAPTIVE_VIEWS} and tab.auc.between(0, 1).all()
    assert {'fedmia_1:repaired', 'seqmia:coalition_sum', 'grad_cosine:unmasked'} <= set(scores)
    plain = replace(rec.traj, adaptive=None)                             # the same trajectory without adaptive views
    with pytest.raises(ValueError, match="view 'repaired' needs a trajectory recorded with cofedmid.adaptive.AdaptiveRecorder"):
        attack_scores(plain, 'loss', 1, 'repaired')
    with pytest.raises(ValueError, match="view must be 'upload', 'global' or an adaptive view"):
        attack_scores(rec.traj, 'loss', 1, 'fixed')
    back = rec.traj.__class__.load(_save(rec.traj))                      # saved and loaded with its adaptive views
    assert set(back.adaptive) == set(ADAPTIVE_VIEWS)
    assert np.array_equal(attack_scores(back, 'loss', 1, 'repaired'), attack_scores(rec.traj, 'loss', 1, 'repaired'))

def _save(traj):
    import tempfile, os
    p = os.path.join(tempfile.mkdtemp(), 't.npz'); traj.save(p); return p
