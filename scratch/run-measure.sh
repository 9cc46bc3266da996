set -x
cd /work/wt-sparseq4
npx tsx src/cli/main.ts frontier models/stories260k --calibration data/tinystories/tinystories_calibration.txt --ppl data/tinystories/tinystories_eval.txt --ppl-seqlen 256 --windows 16 --nsamples 32 --seqlen 256 --out scratch/fr-stories --json > scratch/fr-stories.json 2> scratch/fr-stories.err
npx tsx scratch/dense.mts
SOTU=../shared/data/bench-corpus/eval_sotu_2001_2021.txt
for spec in "dense fp32" "dense q8" "dense q4" "wanda0.5 q4" "wanda0.5-sparse q4" "wanda0.7 q4" "wanda0.7-sparse q4" "wanda0.5 fp32" "wanda0.7 fp32"; do
  set -- $spec
  npx tsx src/cli/main.ts eval scratch/out/$1 --dtype $2 --ppl $SOTU --seqlen 512 --windows 16 --json > scratch/eval-$1-$2.json 2>/dev/null
done
echo done > scratch/measure-done
npx tsx scratch/loadtime.mts > scratch/loadtime.txt 2>&1
