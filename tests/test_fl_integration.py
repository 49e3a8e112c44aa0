"Integration on real CIFAR-10: a 10-client federation learns and its trajectory shows a growing membership gap."
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from cofedmid.data import load_dataset
from cofedmid.partition import Federation, CandidatePool
from cofedmid.fl import FedAvg, FLConfig
from cofedmid.trajectory import TrajectoryRecorder

@pytest.mark.slow
def test_cifar10_federation_learns_and_leaks(data_dir):
    data = load_dataset('cifar10', data_dir, progress=False)
    fed = Federation.split(data.y_train.numpy(), n_clients=10, size=500, n_ofl=1000, n_val=500, seed=0)
    pool = CandidatePool.make(fed, n_per_client=250, n_ofl=1000, seed=0)
    rec = TrajectoryRecorder(pool, record_every=4, grad_signals=False)
    sim = FedAvg(data, fed, 'cnn', FLConfig(rounds=16, local_epochs=2, batch_size=64, lr=0.05, eval_size=2000,
                                            progress=False), observers=[rec])
    hist = sim.run()
    accs = [h['test_acc'] for h in hist]
    assert accs[3] > 0.25 and accs[-1] > 0.40, accs          # chance is 0.10
    t = rec.traj
    gaps, aucs = [], []
    for r in range(len(t.rounds)):
        use, member = t.pool.labels(0, 'ofl')
        loss = t.loss[r, 0, use]
        gaps.append(loss[~member].mean() - loss[member].mean())
        aucs.append(roc_auc_score(member, -loss))
    assert gaps[-1] > gaps[0] + 0.2 and gaps[-1] > 0.3, gaps  # the member/non-member loss gap grows
    assert aucs[-1] > 0.6, aucs                               # 250 members vs 1000 OFL: SE of the AUC ~ 0.02
