#!/bin/bash
PY=/work/main/.venv/bin/python
RO='score: {knn_weight: 0, pixel_weight: 1, perceptual_weight: 1, map_units: std, image_score: map'
run() { tag=$1; cfg=$2
  $PY rstream.py /work/shared/datasets/textures-dev --cats bark,brick,canvas,gravel,wood --cfg "$cfg" --tag $tag --out q1.txt 2>/dev/null
  $PY rstream.py /work/shared/datasets/real-dev --limit 12 --cfg "$cfg" --tag $tag --out q1.txt 2>/dev/null
}
run base "{$RO}}"
run hidden "{$RO}, fit: {loss_region: hidden}}"
run hid_rel "{$RO, mask_block_rel: [0.25]}, corruption: {mask_block_rel: [0.25]}, fit: {loss_region: hidden}}"
run hid_rel_noid "{$RO, mask_block_rel: [0.25]}, corruption: {mask_block_rel: [0.25]}, fit: {loss_region: hidden}, model: {identity_start: false}}"
run hid_noid "{$RO}, fit: {loss_region: hidden}, model: {identity_start: false}}"
run hid_rel_200 "{$RO, mask_block_rel: [0.25]}, corruption: {mask_block_rel: [0.25]}, fit: {loss_region: hidden, steps: 200}}"
