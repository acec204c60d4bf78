/*
 * classify.c: classifies one image with a shufflenet model through the C API.
 *
 *   classify MODEL RAW_RGB_FILE HEIGHT WIDTH [INPUT_NPY_OUT]
 *
 * RAW_RGB_FILE holds HEIGHT * WIDTH * 3 bytes: interleaved R, G, B, row by row
 * (what `convert img.jpg -depth 8 rgb:img.rgb` or `ffmpeg -pix_fmt rgb24` write).
 * The image is NOT resized: the session is created at the image's own size (the
 * network accepts any size it can downsample 32x; a classifier's global pooling
 * makes the output 1000 logits at every size). Pixels are preprocessed with the
 * model's recorded mean and scale, x = (raw - mean[c]) * scale[c], or x = raw / 255
 * if it records none, then arranged in the model's layout (NCHW or NHWC).
 *
 * Prints the top-5 class indices with their logits, in the format of
 * `shufflenet run`, and the latency: the median of 5 runs after 1 warm-up run.
 * With INPUT_NPY_OUT it also writes the preprocessed input as a float32 .npy, which
 * `shufflenet run MODEL --input INPUT_NPY_OUT` accepts (the test compares the two).
 *
 * Build (host):    cc -O2 -I engine/include classify.c \
 *                     target/release/libshufflenet.a -lpthread -ldl -lm -o classify
 * Build (Android): $NDK/toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android24-clang \
 *                     -O2 -I bench-android/out classify.c bench-android/out/libshufflenet.a \
 *                     -llog -lunwind -ldl -lm -o classify
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shufflenet.h"

#define WARMUP 1
#define RUNS 5
#define TOP 5

static int fail(const char *what, sn_status st) {
    fprintf(stderr, "classify: %s: %s (%s)\n", what, sn_last_error(),
            sn_status_message((int)st));
    return 1;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parses a positive size; 0 on error. */
static size_t parse_size(const char *s) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    return (*s && !*end && v > 0) ? (size_t)v : 0;
}

/* Reads exactly `len` bytes of `path` into a new buffer (NULL on error). */
static unsigned char *read_exact(const char *path, size_t len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    if (!f) {
        perror(path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        fclose(f);
        return NULL;
    }
    if ((unsigned long)size != len) {
        fprintf(stderr, "classify: %s has %ld bytes, expected %lu (height x width x 3)\n",
                path, size, (unsigned long)len);
        fclose(f);
        return NULL;
    }
    buf = malloc(len);
    if (!buf || fread(buf, 1, len, f) != len) {
        fprintf(stderr, "classify: cannot read %s\n", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Writes `data` as a little-endian float32 .npy of shape (1, d1, d2, d3). */
static int write_npy(const char *path, const float *data, size_t d1, size_t d2, size_t d3) {
    char header[256];
    int n = snprintf(header, sizeof header,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (1, %lu, %lu, %lu), }",
                     (unsigned long)d1, (unsigned long)d2, (unsigned long)d3);
    size_t total = 10 + (size_t)n + 1, hlen;
    FILE *f;
    if (n < 0 || (size_t)n >= sizeof header - 64) return 1; /* room to pad */
    total = (total + 63) / 64 * 64; /* magic + header + '\n', padded to 64 */
    hlen = total - 10;
    memset(header + n, ' ', hlen - 1 - (size_t)n);
    header[hlen - 1] = '\n';
    f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc((int)(hlen & 0xff), f);
    fputc((int)(hlen >> 8), f);
    fwrite(header, 1, hlen, f);
    fwrite(data, sizeof(float), d1 * d2 * d3, f); /* the targets are little-endian */
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    sn_model *model = NULL;
    sn_session *session = NULL;
    sn_status st;
    sn_layout layout;
    size_t h, w, c, in_len, out_len, count, i, k, y, x;
    float mean[3] = {0, 0, 0}, scale[3] = {1.0f / 255, 1.0f / 255, 1.0f / 255};
    unsigned char *rgb = NULL;
    float *input = NULL, *output = NULL;
    double times[RUNS], t;
    size_t top[TOP];
    int rc = 1;

    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s MODEL RAW_RGB_FILE HEIGHT WIDTH [INPUT_NPY_OUT]\n", argv[0]);
        return 2;
    }
    h = parse_size(argv[3]);
    w = parse_size(argv[4]);
    if (!h || !w || h > 100000 || w > 100000) {
        fprintf(stderr, "classify: bad size %s x %s\n", argv[3], argv[4]);
        return 2;
    }

    /* Every error path below goes to `done`, which frees what exists: the free
     * functions accept NULL handles. */
    if ((st = sn_model_open(argv[1], &model)) != SN_OK) {
        fail("open model", st);
        goto done;
    }
    if ((st = sn_model_input_layout(model, &layout)) != SN_OK ||
        (st = sn_model_input_channels(model, &c)) != SN_OK) {
        fail("query model", st);
        goto done;
    }
    if (c != 3) {
        fprintf(stderr, "classify: the model takes %lu channels, not RGB\n", (unsigned long)c);
        goto done;
    }
    if ((st = sn_model_preprocess(model, mean, scale, 3, &count)) != SN_OK) {
        fail("preprocessing", st);
        goto done;
    }
    if (count == 0) { /* none recorded: x / 255 */
        for (k = 0; k < 3; k++) {
            mean[k] = 0.0f;
            scale[k] = 1.0f / 255;
        }
    }

    if (!(rgb = read_exact(argv[2], h * w * 3))) goto done;
    if ((st = sn_session_create(model, h, w, 1, &session)) != SN_OK) {
        fail("create session", st);
        goto done;
    }
    if ((st = sn_session_input_len(session, &in_len)) != SN_OK ||
        (st = sn_session_output_len(session, &out_len)) != SN_OK) {
        fail("query session", st);
        goto done;
    }
    input = malloc(in_len * sizeof *input);
    output = malloc(out_len * sizeof *output);
    if (!input || !output || in_len != h * w * 3 || out_len < TOP) {
        fprintf(stderr, "classify: unexpected sizes or out of memory\n");
        goto done;
    }
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            for (k = 0; k < 3; k++) {
                float v = ((float)rgb[(y * w + x) * 3 + k] - mean[k]) * scale[k];
                if (layout == SN_LAYOUT_NCHW)
                    input[(k * h + y) * w + x] = v;
                else
                    input[(y * w + x) * 3 + k] = v;
            }
    if (argc == 6) {
        int bad = layout == SN_LAYOUT_NCHW ? write_npy(argv[5], input, 3, h, w)
                                           : write_npy(argv[5], input, h, w, 3);
        if (bad) {
            fprintf(stderr, "classify: cannot write %s\n", argv[5]);
            goto done;
        }
    }

    for (i = 0; i < WARMUP + RUNS; i++) {
        t = now_ms();
        st = sn_session_run(session, input, in_len, output, out_len);
        if (st != SN_OK) {
            fail("run", st);
            goto done;
        }
        if (i >= WARMUP) times[i - WARMUP] = now_ms() - t;
    }
    qsort(times, RUNS, sizeof times[0], cmp_double);

    /* Top-5, largest first; ties go to the smaller index (as `shufflenet run`). */
    for (k = 0; k < TOP; k++) {
        size_t best = out_len;
        for (i = 0; i < out_len; i++) {
            size_t j;
            int taken = 0;
            for (j = 0; j < k; j++) taken |= top[j] == i;
            if (!taken && (best == out_len || output[i] > output[best])) best = i;
        }
        top[k] = best;
    }
    printf("%s, %lux%lu %s input\n", sn_model_description(model), (unsigned long)h,
           (unsigned long)w, layout == SN_LAYOUT_NCHW ? "NCHW" : "NHWC");
    printf("top-5: ");
    for (k = 0; k < TOP; k++)
        printf("%s%lu (%.4f)", k ? ", " : "", (unsigned long)top[k], output[top[k]]);
    printf("\nlatency: %.3f ms (median of %d runs after %d warm-up), min %.3f ms\n",
           times[RUNS / 2], RUNS, WARMUP, times[0]);
    rc = 0;

done:
    free(rgb);
    free(input);
    free(output);
    sn_session_free(&session);
    sn_model_free(&model);
    return rc;
}
