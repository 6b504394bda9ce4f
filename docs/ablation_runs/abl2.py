"""Warm-protocol ablation (docs/ablations.md section 2): one fit per image, masked-view L2 and
perceptual maps scored before and after the warm fit, normalisations combined offline.
Reproduce: python docs/ablation_runs/abl2.py all warm \
  '{"fit":{"warm_steps":5},"score":{"vgg_layers":["relu2_2","relu3_1"]}}' warm_masked_view.json"""
import sys, time, json, numpy as np, torch
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..'))
from sklearn.metrics import roc_auc_score, average_precision_score
from edge.config import SSDNetConfig, ScoreConfig
from edge.detector import Detector
from edge.scoring import AnomalyScorer
from edge.fitter import image_to_tensor
from edge.vgg import VGG19Features
from tools.eval.dataset import list_categories, load_category
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv)>5 else 1)
root=__import__('os').environ.get('DATASET', '../shared/datasets/textures-dev')
cats=sys.argv[1].split(',') if sys.argv[1]!='all' else list_categories(root)
mode=sys.argv[2]; train=json.loads(sys.argv[3]); out=sys.argv[4]
cfg=SSDNetConfig.model_validate(train)
vgg=VGG19Features(layers=tuple(dict.fromkeys(('relu1_2','relu2_2','relu3_1')+cfg.score.vgg_layers)))
det=Detector(cfg, vgg=vgg)
sc=AnomalyScorer(det.fitter.model, cfg.score.model_copy(update={"perceptual_weight":1.0,"clean_view":False}), cfg.fit.scales, VGG19Features(layers=cfg.score.vgg_layers))
def raw(x):
    with torch.inference_mode(): l2,p=sc.raw_maps(x)[0]
    return l2[0,0].numpy(), p[0,0].numpy()
def norm(m,how):
    if how=='std': return (m-m.mean())/(m.std()+1e-8)
    if how=='mean': return m/(m.mean()+1e-8)
    return m
COMBOS={f'{w}_{n}':(w,n) for w in ['L2','P','L2P'] for n in ['std','mean']}
COMBOS['L2_none']=('L2','none')
def combos(l2,p):
    r={}
    for k,(w,n) in COMBOS.items():
        r[k]= norm(l2,n) if w=='L2' else norm(p,n) if w=='P' else norm(l2,n)+norm(p,n)
    return r
phases=['pre','post'] if mode=='warm' else ['post']
res={}; t0=time.time()
for c in cats:
    samples=load_category(root,c)
    if mode=='warm':
        ref=next(s for s in samples if s.defect_type=='good')
        det.reset(); det.fit(image_to_tensor(ref.image, det.device, det.fitter.multiple)); state=det.fitter.state_dict()
    maps={}
    for s in samples:
        x=image_to_tensor(s.image, det.device, det.fitter.multiple)
        if mode=='warm':
            det.restore(state)
            for k,v in combos(*raw(x)).items(): maps.setdefault('pre_'+k,[]).append(v)
        else: det.reset()
        det.fit(x)
        for k,v in combos(*raw(x)).items(): maps.setdefault('post_'+k,[]).append(v)
    y=np.concatenate([s.mask.ravel() for s in samples])
    res[c]={k:(roc_auc_score(y,np.concatenate([m.ravel() for m in v])), average_precision_score(y,np.concatenate([m.ravel() for m in v]))) for k,v in maps.items()}
    best=sorted(res[c].items(), key=lambda kv:-kv[1][0])[:4]
    print(f'{c:16s} {time.time()-t0:.0f}s', ' '.join(f'{k}:{a:.3f}/{p:.3f}' for k,(a,p) in best), flush=True)
    json.dump(res, open(out,'w'))
keys=list(next(iter(res.values())).keys())
for k in sorted(keys, key=lambda k:-np.mean([res[c][k][0] for c in res])):
    print(f'MEAN {k:16s} auroc {np.mean([res[c][k][0] for c in res]):.3f} auprc {np.mean([res[c][k][1] for c in res]):.3f}')
