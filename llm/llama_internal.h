/* Private to llm/llama*.c: the decoder's weights as loaded on one backend. */
#ifndef MS_LLM_LLAMA_INTERNAL_H
#define MS_LLM_LLAMA_INTERNAL_H

#include "llm/llama.h"

typedef struct ms_llama_layer {
    ms_tensor input_norm;      /* [H] */
    ms_tensor post_norm;       /* [H] */
    ms_tensor wq;              /* [Hq*D, H] */
    ms_tensor wk;              /* [Hkv*D, H] */
    ms_tensor wv;              /* [Hkv*D, H] */
    ms_tensor wo;              /* [H, Hq*D] */
    ms_tensor bq, bk, bv, bo;  /* [Hq*D], [Hkv*D], [Hkv*D], [H]; data NULL unless attention_bias */
    ms_tensor w_gate;          /* [I, H] */
    ms_tensor w_up;            /* [I, H] */
    ms_tensor w_down;          /* [H, I] */
    ms_tensor b_gate, b_up, b_down; /* [I], [I], [H]; data NULL unless mlp_bias */
} ms_llama_layer;

struct ms_llama {
    ms_llama_config cfg;
    int32_t image_token_index;
    ms_backend *backend;
    ms_tensor embed;           /* [V, H] */
    ms_tensor norm;            /* [H] final RMSNorm */
    ms_tensor lm_head;         /* [V, H]; same memory as embed when tied */
    bool lm_head_tied;
    ms_llama_layer *layers;    /* (num_hidden_layers) */
};

/* A bias tensor when loaded, else NULL (what ms_op_matmul takes). */
static inline const ms_tensor *ms_llama_opt(const ms_tensor *t) { return t->data ? t : NULL; }

#endif
