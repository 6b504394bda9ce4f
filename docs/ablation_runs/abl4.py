"""Scoring-view ablation (docs/ablations.md section 1): a cold fit per image, maps of the masked
and the clean view, combinations offline. Reproduce (training A, then B):
  python docs/ablation_runs/abl4.py chainmail,wood,brick,canvas,cobblestone \
    '{"score":{"vgg_layers":["relu2_2","relu3_1"]}}' cold_views_trainA.json
  python docs/ablation_runs/abl4.py chainmail,wood,brick,canvas,cobblestone \
    '{"score":{"vgg_layers":["relu2_2","relu3_1"]},"corruption":{"fill_shift":0.3,"fill_keep":0.5}}' cold_views_trainB.json"""
import sys, time, json, numpy as np, torch
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..'))
from sklearn.metrics import roc_auc_score, average_precision_score
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.scoring import AnomalyScorer
from edge.fitter import image_to_tensor
from edge.vgg import VGG19Features
from tools.eval.dataset import load_category
torch.set_num_threads(1)
root=__import__('os').environ.get('DATASET', '../shared/datasets/textures-dev')
cats=sys.argv[1].split(','); train=json.loads(sys.argv[2]); out=sys.argv[3]
cfg=SSDNetConfig.model_validate(train)
det=Detector(cfg)
sc=AnomalyScorer(det.fitter.model, cfg.score.model_copy(update={"perceptual_weight":1.0,"masks":4,"clean_view":True}), cfg.fit.scales, VGG19Features(layers=cfg.score.vgg_layers))
z=lambda m:(m-m.mean())/(m.std()+1e-8)
res={}; t0=time.time()
for c in cats:
    samples=[s for s in load_category(root,c) if s.path.name=='000.png']
    maps={}
    for s in samples:
        x=image_to_tensor(s.image, det.device, det.fitter.multiple)
        det.reset(); det.fit(x)
        with torch.inference_mode(): (l4,p4),(l0,p0)=[(a[0,0].numpy(),b[0,0].numpy()) for a,b in sc.raw_maps(x)]
        a=lambda m: np.abs(z(m))
        v={'m4_L2':z(l4),'m4_L2P':z(l4)+z(p4),'m0_L2':z(l0),'m0_L2P':z(l0)+z(p0),'both_L2P':z(l4)+z(p4)+z(l0)+z(p0),
           'm4_aL2':a(l4),'m4_aL2P':a(l4)+a(p4),'m0_aL2':a(l0),'m0_aL2P':a(l0)+a(p0),'both_aL2':a(l4)+a(l0),'both_aL2P':a(l4)+a(p4)+a(l0)+a(p0),'m4L2_m0L2P':z(l4)+z(l0)+z(p0),'m4aL2_m0L2P':a(l4)+z(l0)+z(p0)}
        for k,m in v.items(): maps.setdefault(k,[]).append(m)
    y=np.concatenate([s.mask.ravel() for s in samples])
    res[c]={k:(roc_auc_score(y,np.concatenate([m.ravel() for m in v])), average_precision_score(y,np.concatenate([m.ravel() for m in v]))) for k,v in maps.items()}
    print(f'{c:14s} {time.time()-t0:.0f}s', ' '.join(f'{k}:{a:.3f}/{p:.3f}' for k,(a,p) in res[c].items()), flush=True)
    json.dump(res, open(out,'w'))
for k in res[cats[0]]:
    print(f'MEAN {k:10s} auroc {np.mean([res[c][k][0] for c in res]):.3f} auprc {np.mean([res[c][k][1] for c in res]):.3f}')
