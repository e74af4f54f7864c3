/*
 * `modserve bench tokenizer`: encode throughput of modserve's tokenizer on a corpus,
 * single thread, optionally beside Hugging Face tokenizers (Python, the reference
 * environment) on the same corpus in the same run.
 */
#ifndef MS_BENCH_TOKENIZER_BENCH_H
#define MS_BENCH_TOKENIZER_BENCH_H

/* Options: --model DIR (required) --corpus FILE (default testdata/test_tokenizers/corpus.txt)
 * --rounds N (default 5) --hf PYTHON (run the library too) --hf-script FILE.
 * Returns a process exit code. */
int ms_bench_tokenizer_main(int argc, char **argv);

#endif
