cd /work/main
root=${1:-/tmp/spd/rev}
rm -rf $root
for preset in pld none pld none; do
  n=$preset-$(date +%s)
  echo "== $n $(date -u +%T)"
  build/release/examples/bert/pld-bert pretrain --size small --steps 200 --pld $preset --gamma 0.05 --eval-every 0 --eval-max-seqs 64 --checkpoint-every 0 --log-every 100 --out $root/$n | grep -E "^(done)"
  python3 -c "import json,sys; s=json.load(open('$root/$n/summary.json')); print('$preset', round(s['train_s'],1), round(s['layer_s'],1), s['mean_kept_fraction'], 'ms/kept layer-step', round(1000*s['layer_s']/(s['mean_kept_fraction']*200*4),1), 'non-layer s', round(s['train_s']-s['layer_s'],1))"
done
