"""Per defective image of some categories, the cell AUROC of the own map and of the cross-frame one (a
stream.py output): is a loss the stream's recurrence (the second image of a kind) or the first image too?
Usage: python docs/ablation_runs/cross_frame/per_image.py a.pkl,b.pkl OUTa.pkl,OUTb.pkl cobblestone,rock"""
import sys, pickle, torch, torch.nn.functional as F
from sklearn.metrics import roc_auc_score
R, P = {}, {}
for f in sys.argv[1].split(','):
    R.update(pickle.load(open(f, 'rb')))
for f in sys.argv[2].split(','):
    P.update(pickle.load(open(f, 'rb')))
for c in sys.argv[3].split(','):
    for k, r in P[c]['res'].items():
        e = R[k]
        m = F.avg_pool2d(torch.from_numpy(e['mask'].astype('float32'))[None, None], 4, 4)[0, 0].numpy().ravel() > 0.5
        if e['label'] and m.any():
            print(c, e['type'], k.split('/')[-1], f"own {roc_auc_score(m, r['own']):.2f} cross-frame {roc_auc_score(m, r['cs']):.2f}"
                  f" defect {m.mean():.3f} of the frame")
