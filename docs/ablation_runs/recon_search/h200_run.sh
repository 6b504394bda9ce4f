#!/bin/bash
# one device check: CUDA tests, streamed evals with the fit on the GPU, bench
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 SSDNET_VGG_WEIGHTS=$PWD/.gpu/vgg.pth OMP_NUM_THREADS=2
R=$OUT/res; mkdir -p $R; T0=$(date +%s)
pack() { tar czf $OUT/results.tgz -C $OUT res; }
python3 -c "import edge.config, tools.cli, zmq" || exit 1; nvidia-smi -L; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_export_tensorrt.py -m gpu -rs 2>&1 | tee $R/pytest_gpu.log | tail -15
pack
D=.gpu; T=$D/textures-dev; RD=$D/real-dev; W=$D/real-stream-dev
echo "score: {pixel_weight: 0, perceptual_weight: 0}" > $D/recon_off.yaml
echo "score: {knn_weight: 0, pixel_weight: 1, perceptual_weight: 1, map_units: std, image_score: map}" > $D/recon_only.yaml
echo "{score: {knn_weight: 0, pixel_weight: 1, perceptual_weight: 1, map_units: std, image_score: map}, fit: {steps: 300, warm_steps: 10}}" > $D/recon_only_long.yaml
ev() { name=$1; shift; s=$(date +%s); [ $(( s - T0 )) -gt 360 ] && { echo "$name skipped (time)"; return; }; timeout 200 python3 -m tools.cli eval "$@" --mode stream --jobs 4 --baselines none --device cuda --json $R/$name.json > $R/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s"; pack; }
WU="--warmup $W --warmup-frames 200"
( ev tex_default $T; ev tex_recon_only $T --config $D/recon_only.yaml; ev real_w200_recon_off $RD --config $D/recon_off.yaml $WU; ev tex_recon_only_long $T --config $D/recon_only_long.yaml ) &
( ev real_w0_default $RD; ev real_w200_default $RD $WU; ev real_w200_recon_only $RD --config $D/recon_only.yaml $WU; ev real_w200_recon_only_long $RD --config $D/recon_only_long.yaml $WU ) &
wait
timeout $(( 560 - $(date +%s) + T0 )) python3 -m tools.cli bench --device cuda --threads 2 --json $R/bench_cuda.json > $R/bench_cuda.log 2>&1; echo "bench rc=$?"; tail -40 $R/bench_cuda.log
pack
