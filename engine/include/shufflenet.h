/*
 * shufflenet.h: the C API of the shufflenet engine (ShuffleNet v1 inference).
 *
 * Link with the static library libshufflenet.a (bench-android/build.sh builds it
 * for arm64-v8a with LTO; `cargo build --release --target <triple> -p engine`
 * also produces one, without LTO), plus the system libraries Rust's standard
 * library needs (`rustc --print native-static-libs` lists them):
 *   Android (NDK clang):  -llog -lunwind -ldl -lm
 *   Linux glibc:          -lgcc_s -lpthread -ldl -lm
 *
 * Conventions
 * - Handles (sn_model, sn_session) are opaque. Functions that create one write it
 *   to an out-parameter; on failure they write NULL there (when it is not NULL).
 * - Every function that can fail returns an sn_status. SN_OK (0) is success; on
 *   any other value sn_last_error() describes what went wrong.
 * - NULL pointers, misaligned pointers, wrong element counts and unusable sizes
 *   are reported as status codes, never a crash. What cannot be checked is the C
 *   contract itself: a non-NULL pointer must point to memory of the documented
 *   size, and a handle must come from this library and not have been freed.
 * - Free functions take the address of the handle variable and set it to NULL:
 *   `sn_model_free(&model); sn_model_free(&model);` frees once, the second call
 *   does nothing. (Freeing a *copy* of a freed handle cannot be detected.)
 * - Panics: the library is built with panic = "unwind" (the workspace release
 *   profile) and every exported function catches panics, so an internal bug
 *   returns SN_ERR_INTERNAL instead of unwinding into C or aborting the app. A
 *   build with panic = "abort" would abort the process instead.
 * - Memory: a session's working memory (its "arena") is allocated once, by
 *   sn_session_create, and is limited to 1 GiB; sn_session_run allocates nothing.
 *   sn_model_open maps the file read-only (the file must not be modified while the
 *   model is alive; replacing it by rename is fine); sn_model_from_memory copies
 *   the buffer, which the caller may free right after the call.
 *
 * Threads
 * - A model may be shared by sessions on many threads at once: the query
 *   functions and sn_session_create may be called concurrently on one model.
 * - A session is used by one thread at a time (sn_session_run mutates it); use
 *   one session per thread. Sessions may move between threads.
 * - Sessions keep the model alive: sn_model_free may be called while sessions
 *   created from it exist (on any thread); the model is released with its last
 *   session. Only the handle itself must not be in use by another thread while it
 *   is freed.
 * - The last error message is per thread; there is no other global state.
 */
#ifndef SHUFFLENET_H
#define SHUFFLENET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Values are stable. */
typedef enum sn_status {
    SN_OK = 0,                   /* success */
    SN_ERR_NULL_POINTER = 1,     /* a required pointer argument is NULL */
    SN_ERR_INVALID_ARGUMENT = 2, /* thread count, empty/misaligned/overlapping buffer */
    SN_ERR_IO = 3,               /* the model file cannot be opened or mapped */
    SN_ERR_MODEL = 4,            /* not a valid model (corrupt, truncated, version) */
    SN_ERR_SIZE = 5,             /* height/width do not fit the network */
    SN_ERR_ARENA_LIMIT = 6,      /* the input size needs more than 1 GiB */
    SN_ERR_INPUT_LENGTH = 7,     /* input element count != sn_session_input_len */
    SN_ERR_OUTPUT_CAPACITY = 8,  /* output buffer (or array) too small */
    SN_ERR_INTERNAL = 9          /* engine bug, including a caught panic */
} sn_status;

/* Memory layout of a model's input buffer. */
typedef enum sn_layout {
    SN_LAYOUT_NCHW = 0, /* planar: all of channel 0, then channel 1, ... */
    SN_LAYOUT_NHWC = 1  /* interleaved: the channels of each pixel together */
} sn_layout;

/* A loaded model. */
typedef struct SnModel sn_model;
/* A model bound to one input size, with its working memory. */
typedef struct SnSession sn_session;

/* ---- errors and version ---------------------------------------------------- */

/* The message of the last call on the calling thread that failed. Owned by the
 * library, valid until the next failing call on this thread. "" before any
 * failure; successful calls leave it unchanged. Never NULL. */
const char *sn_last_error(void);

/* A static description of a status code ("unknown status" otherwise). Never NULL. */
const char *sn_status_message(int status);

/* The library version, "MAJOR.MINOR.PATCH". Static, never NULL. */
const char *sn_version(void);

/* ---- models ---------------------------------------------------------------- */

/* Opens the model file at `path` (memory-mapped and validated). */
sn_status sn_model_open(const char *path, sn_model **out_model);

/* Loads a model file held in memory (e.g. an APK asset): the `len` bytes at `data`
 * (any alignment) are copied and validated. len == 0 is SN_ERR_INVALID_ARGUMENT. */
sn_status sn_model_from_memory(const void *data, size_t len, sn_model **out_model);

/* Frees `*model` and sets it to NULL. NULL `model` or `*model`: no-op. Sessions
 * created from the model stay valid. */
void sn_model_free(sn_model **model);

/* The layout the input buffer of sn_session_run must have. */
sn_status sn_model_input_layout(const sn_model *model, sn_layout *out_layout);

/* The number of input channels (3 for RGB). */
sn_status sn_model_input_channels(const sn_model *model, size_t *out_channels);

/* The input size the model was exported for; 0 x 0 if it declares none. Any size
 * the network accepts can be used for a session. */
sn_status sn_model_default_size(const sn_model *model, size_t *out_height,
                                size_t *out_width);

/* The recorded preprocessing x = (raw - mean[c]) * scale[c], raw a pixel value in
 * [0, 255]: writes n values to each array and n to *out_count, where n is the
 * channel count, or 0 if the model records no preprocessing. If capacity < n the
 * arrays are untouched, *out_count is n and the status SN_ERR_OUTPUT_CAPACITY. */
sn_status sn_model_preprocess(const sn_model *model, float *mean, float *scale,
                              size_t capacity, size_t *out_count);

/* A description such as "ShuffleNet v1 1x (g = 3)", valid until the handle is
 * freed; NULL if `model` is NULL. */
const char *sn_model_description(const sn_model *model);

/* ---- sessions -------------------------------------------------------------- */

/* Binds `model` to `height` x `width` inputs with `threads` worker threads (1 = the
 * caller's thread, at most 256) and allocates the working memory. The workers
 * split each kernel call by their measured relative speeds (big and little
 * cores; up to 16 workers, more split evenly); results are the same for every
 * thread count. */
sn_status sn_session_create(const sn_model *model, size_t height, size_t width,
                            size_t threads, sn_session **out_session);

/* Runs one inference. `input` holds `input_len` floats in the model's layout and
 * `input_len` must equal sn_session_input_len. The result is written to the first
 * sn_session_output_len floats of `output`, which holds `output_capacity` floats.
 * Buffers must be float-aligned and must not overlap. */
sn_status sn_session_run(sn_session *session, const float *input, size_t input_len,
                         float *output, size_t output_capacity);

/* The number of floats a run reads: channels * height * width. */
sn_status sn_session_input_len(const sn_session *session, size_t *out_len);

/* The number of floats a run writes (1000 logits for an ImageNet classifier). */
sn_status sn_session_output_len(const sn_session *session, size_t *out_len);

/* The output's planar shape, channels x height x width (1000 x 1 x 1 for a
 * classifier); the product is sn_session_output_len. */
sn_status sn_session_output_shape(const sn_session *session, size_t *out_channels,
                                  size_t *out_height, size_t *out_width);

/* Frees `*session` and sets it to NULL. NULL `session` or `*session`: no-op. */
void sn_session_free(sn_session **session);

#ifdef __cplusplus
}
#endif

#endif /* SHUFFLENET_H */
