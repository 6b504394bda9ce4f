"""Research: stream a dataset through a Detector (recon maps etc.), optional shared warm-up."""
import argparse, json, sys, time, copy
from pathlib import Path
import numpy as np, torch, cv2, yaml
sys.path.insert(0, '/work/research')
from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector
from edge.dataset import load_category, list_categories
from sklearn.metrics import roc_auc_score, average_precision_score
def summarize(maps, masks, sc, labels):
    m=np.concatenate([x.ravel() for x in maps]); t=np.concatenate([x.ravel() for x in masks])
    return dict(pixel_auroc=roc_auc_score(t,m), pixel_auprc=average_precision_score(t,m), image_auroc=roc_auc_score(labels, sc) if len(set(labels))>1 else float('nan'))

ap = argparse.ArgumentParser()
ap.add_argument('dataset'); ap.add_argument('--cfg', default='{}'); ap.add_argument('--cats'); ap.add_argument('--limit', type=int)
ap.add_argument('--warmup'); ap.add_argument('--warmup-frames', type=int, default=0); ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--out'); ap.add_argument('--tag', default=''); ap.add_argument('--save')
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = parse_config(SSDNetConfig, yaml.safe_load(a.cfg))
root = Path(a.dataset)
cats = a.cats.split(',') if a.cats else list_categories(root)
det = Detector(cfg)
t0 = time.time()
warm_state = None
if a.warmup and a.warmup_frames:
    det.reset()
    for p in sorted(Path(a.warmup).glob('*.png'))[:a.warmup_frames]:
        det.process(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
    warm_state = (det.fitter.state_dict(), det.model_version)
res = {}
for c in cats:
    samples = load_category(root, c)
    if a.limit: samples = samples[:a.limit]
    det.reset()
    if warm_state: det.restore(warm_state[0])
    maps, scores = [], []
    for s in samples:
        d = det.process(s.image); maps.append(d.anomaly_map); scores.append(d.score)
    res[c] = summarize(maps, [s.mask for s in samples], scores, [s.label for s in samples])
    if a.save:
        import pickle
        Path(a.save).mkdir(parents=True, exist_ok=True)
        pickle.dump({str(s.path): (m.astype(np.float16), sc) for s, m, sc in zip(samples, maps, scores)}, open(f'{a.save}/{c}.pkl', 'wb'))
mean = {k: float(np.mean([r[k] for r in res.values()])) for k in ('pixel_auroc', 'pixel_auprc', 'image_auroc')}
line = f"{a.tag:30s} {Path(a.dataset).name} w{a.warmup_frames} AUROC {mean['pixel_auroc']:.3f} AUPRC {mean['pixel_auprc']:.3f} img {mean['image_auroc']:.3f} ({time.time()-t0:.0f}s) | " + ' '.join(f"{c[:6]}:{r['pixel_auroc']:.2f}/{r['pixel_auprc']:.2f}" for c, r in res.items())
print(line, flush=True)
if a.out:
    with open(a.out, 'a') as f: f.write(line + '\n')
