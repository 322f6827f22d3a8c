"""Experiment only: the learned trunk trained on the TRUE product labels of the good images (an upper bound for the
pseudo-label idea), LOCO validation, given splits:

    LOCO3=pseudo=9,rotate=0,epochs=3,oracle=1 /usr/bin/python3 scripts/factory/anomaly/learned_oracle.py 7,9
"""
import sys, os, time
HERE=os.path.dirname(os.path.abspath(__file__))
sys.path[:0]=[HERE, os.path.dirname(HERE)]
import numpy as np, torch; torch.set_num_threads(1)
import benchmark, build, learned
from data import load_splits
from macs import part_macs
splits=load_splits(0)
for c in map(int, sys.argv[1].split(',')):
    t=time.time()
    train,test,labels=benchmark.split('loco',c,splits,True)
    good=[k for k in range(10) if k!=c]
    cls=np.concatenate([np.full(min(3000,int((splits.train.labels==k).sum())),i) for i,k in enumerate(good)])
    assert len(cls)==len(train)
    order=torch.randperm(len(train),generator=torch.Generator().manual_seed(0)).numpy()
    fit_labels=torch.from_numpy(cls[order[:int(len(order)*build.FIT_SHARE)]]).long()
    learned.pseudo_labels=lambda images,k,seed: fit_labels
    model=build.fit(train, build.Recipe(experts=18), progress=lambda m: None)
    r=build.evaluate(model,test,labels,None,train[model.held_out],0.01,part_macs(model,(1,28,28)))
    print('oracle',c,{m:round(r[m]['auroc'],4) for m in r}, round(time.time()-t),'s',flush=True)
