/* collector._native: the steady-state value pass of `IncrementalParser`, the scrape cache's
 * steady-state append and the remote-write encoder's commit loop, in C.
 *
 * Place in the pipeline: both are called through collector/native.py, which decides whether this
 * module is used at all. steady_values: by collector/model/textparse/incremental.py for every
 * scrape whose body has the same lines as the previous one with new values. That pass is most of
 * the agent's parse CPU in steady state; here it is one walk over the body with no bytes object
 * per line. encode_run: by collector/remote/encoder.py for every committed scrape, per
 * destination; the per-sample lookup, pack and append of series it has encoded before.
 * bulk_append: by collector/scrape/cache.py for every scrape whose series are all cached; the
 * out-of-order check, the last timestamps' update and the sample tuples. encode_labelled: by
 * the encoder instead of encode_run for a destination that sends the scrape's own labels, each
 * sample encoded from its series' label set. encode_run and bulk_append are in
 * _native_append.c, encode_labelled in _native_labels.c (declared in _native.h); this file
 * holds the module.
 *
 * The pure-Python paths are the reference: for every input steady_values either returns exactly
 * the values incremental.py's pass returns (bit for bit, NaN payloads included) or None, in
 * which case the caller takes that path (which also handles what is refused here on purpose:
 * explicit timestamps); encode_run leaves every sample it does not handle exactly as the Python
 * loop would to that loop; bulk_append does what cache.py's `_bulk_append` does. Raising is kept for broken arguments (a layout that does not add up).
 *
 * Prometheus counterpart: none (promparse.go lexes every body; Go needs no second encoder).
 */

#include "_native.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The NaN Prometheus stores for every scraped NaN (collector.model.value.NORMAL_NAN_BITS).
 * Built from its bits: the C library's NAN has another payload. */
static const uint64_t NORMAL_NAN_BITS = 0x7FF8000000000001ULL;

/* The powers of ten that are exact doubles (5^22 < 2^53). */
static const double POW10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Parse one value token (the bytes after "<key> ", up to the end of the line), exactly as the
 * Python path accepts it: ``float(tail)`` over the tail-byte class, then `_nonfinite`'s Go rules.
 * Returns 1 and sets *out on success, 0 to refuse (the caller returns None), -1 with an
 * exception set (out of memory).
 *
 * ``s`` points into the body: the byte at s[n] is the line's '\n' or the bytes object's
 * terminating NUL, either of which ends a number, so strtod never reads past the token. */
static int
parse_value(const char *s, Py_ssize_t n, double *out)
{
    const char *p = s;
    const char *end = s + n;

    if (p < end && (*p == '+' || *p == '-')) {
        p++;
    }
    if (p == end) {
        return 0;
    }
    /* Go spells infinity "inf" or "infinity" in any case, signed or not (GO_FLOAT). */
    if ((*p | 0x20) == 'i') {
        Py_ssize_t rest = end - p;
        if ((rest == 3 && PyOS_strnicmp(p, "inf", 3) == 0) ||
            (rest == 8 && PyOS_strnicmp(p, "infinity", 8) == 0)) {
            *out = *s == '-' ? -Py_HUGE_VAL : Py_HUGE_VAL;
            return 1;
        }
        return 0;
    }
    /* Go takes only an unsigned NaN (Python's float() would take "-nan" too). */
    if ((*p | 0x20) == 'n') {
        if (p != s || n != 3 || PyOS_strnicmp(p, "nan", 3) != 0) {
            return 0;
        }
        memcpy(out, &NORMAL_NAN_BITS, sizeof *out);
        return 1;
    }
    /* DECIMAL of syntax.py: [0-9]+(\.[0-9]*)? | \.[0-9]+, then an optional [eE][+-]?[0-9]+.
     * Checked here so that only what both Go and float() take reaches strtod: float() would
     * also take underscores and surrounding whitespace, which the Python path refuses.
     * The digits are gathered on the way for the exact fast path below. */
    uint64_t mantissa = 0;
    int exact = 1;        /* the mantissa still fits in 2^53 */
    long long exp10 = 0;  /* the decimal exponent of the mantissa's last digit */
    Py_ssize_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (mantissa >= (UINT64_C(1) << 53) / 10) {
            exact = 0;
        }
        mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        p++;
        digits++;
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            if (mantissa >= (UINT64_C(1) << 53) / 10) {
                exact = 0;
            }
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            exp10--;
            p++;
            digits++;
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int negative_exp = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            negative_exp = *p == '-';
            p++;
        }
        if (p == end || *p < '0' || *p > '9') {
            return 0;
        }
        long long e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000) {
                e = e * 10 + (*p - '0');
            }
            p++;
        }
        exp10 += negative_exp ? -e : e;
    }
    if (p != end) {
        return 0;
    }
    /* Clinger's fast path: a mantissa below 2^53 and a power of ten up to 1e22 are both exact
     * doubles, so one IEEE multiplication or division rounds correctly: the very double
     * strtod returns (bit for bit; tests/model/textparse check it against float()). Most
     * exposition values ("1.0", "801433", "3.2e-05") take it; the rest go to strtod, which
     * costs about 100 ns more a value. */
    if (exact && exp10 >= -22 && exp10 <= 22) {
        double value = (double)mantissa;
        value = exp10 < 0 ? value / POW10[-exp10] : value * POW10[exp10];
        *out = *s == '-' ? -value : value;
        return 1;
    }
    /* The very function float() calls (PyFloat_FromString -> PyOS_string_to_double with no
     * overflow exception), so the result is bit-identical to the Python path's. */
    char *stop = NULL;
    double value = PyOS_string_to_double(s, &stop, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            return -1;
        }
        PyErr_Clear(); /* float() would raise ValueError too: the Python path refuses */
        return 0;
    }
    if (stop != end) {
        return 0; /* cannot happen after the check above; refuse rather than guess */
    }
    if (!isfinite(value)) {
        return 0; /* a decimal out of range: Go's ErrRange, worded by the full parse */
    }
    *out = value;
    return 1;
}

PyDoc_STRVAR(steady_values_doc,
"steady_values(body, nlines, mask, fixed, keys, /)\n"
"--\n"
"\n"
"The sample values of ``body`` when it has the remembered structure, else None.\n"
"\n"
"The structure is what IncrementalParser remembers: ``body.split(b'\\n')`` has ``nlines``\n"
"lines; line ``i`` is a sample line when ``i < len(mask)`` and ``mask[i]`` is non-zero, else\n"
"the next line of the tuple ``fixed`` (compared byte for byte). The k-th sample line must be\n"
"``keys[k]``, one space and a Go float with no timestamp. Returns the list of float values\n"
"(NaN as NORMAL_NAN), or None when anything differs.");

/* The layout is checked as it is used, so a broken one raises instead of reading out of
 * bounds; it comes from IncrementalParser._remember, where it cannot be broken. */
static PyObject *
bad_layout(PyObject *result, const char *why)
{
    Py_XDECREF(result);
    PyErr_Format(PyExc_ValueError, "steady_values: inconsistent layout: %s", why);
    return NULL;
}

static PyObject *
steady_values(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "steady_values expected 5 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *body = args[0], *mask = args[2], *fixed = args[3], *keys = args[4];
    if (!PyBytes_Check(body) || !PyBytes_Check(mask) || !PyTuple_Check(fixed) ||
        !PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError,
                        "steady_values(body: bytes, nlines: int, mask: bytes, "
                        "fixed: tuple[bytes, ...], keys: list[bytes])");
        return NULL;
    }
    Py_ssize_t nlines = PyLong_AsSsize_t(args[1]);
    if (nlines == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t nmask = PyBytes_GET_SIZE(mask);
    if (nlines < 1 || nmask > nlines) {
        return bad_layout(NULL, "nlines");
    }

    Py_ssize_t nkeys = PyList_GET_SIZE(keys);
    PyObject *result = PyList_New(nkeys);
    if (result == NULL) {
        return NULL;
    }
    /* PyList_New may run the garbage collector, and so arbitrary finalizers: take the sizes
     * again after it. Nothing below runs Python code (floats are not tracked by the collector),
     * so the borrowed items of ``fixed`` and ``keys`` stay valid through the walk. */
    if (PyList_GET_SIZE(keys) != nkeys) {
        return bad_layout(result, "keys changed size");
    }
    Py_ssize_t nfixed = PyTuple_GET_SIZE(fixed);
    const char *is_sample = PyBytes_AS_STRING(mask);
    const char *p = PyBytes_AS_STRING(body);
    const char *end = p + PyBytes_GET_SIZE(body);
    Py_ssize_t k = 0; /* next key */
    Py_ssize_t f = 0; /* next fixed line */

    for (Py_ssize_t i = 0; i < nlines; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl != NULL ? nl : end;
        /* split() would give another line count: fewer lines, or more after the last one. */
        if ((nl == NULL) != (i == nlines - 1)) {
            goto refuse;
        }
        Py_ssize_t len = eol - p;
        if (i < nmask && is_sample[i]) {
            if (k >= nkeys) {
                return bad_layout(result, "more sample lines than keys");
            }
            PyObject *key = PyList_GET_ITEM(keys, k);
            if (!PyBytes_Check(key)) {
                return bad_layout(result, "a key is not bytes");
            }
            Py_ssize_t klen = PyBytes_GET_SIZE(key);
            /* An empty key mirrors removeprefix returning the line itself (refused there). */
            if (klen == 0 || len <= klen || p[klen] != ' ' ||
                memcmp(p, PyBytes_AS_STRING(key), (size_t)klen) != 0) {
                goto refuse;
            }
            double value;
            int ok = parse_value(p + klen + 1, len - klen - 1, &value);
            if (ok < 0) {
                Py_DECREF(result);
                return NULL;
            }
            if (ok == 0) {
                goto refuse;
            }
            PyObject *item = PyFloat_FromDouble(value);
            if (item == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            PyList_SET_ITEM(result, k, item);
            k++;
        }
        else {
            if (f >= nfixed) {
                return bad_layout(result, "more fixed lines than the tuple holds");
            }
            PyObject *line = PyTuple_GET_ITEM(fixed, f);
            if (!PyBytes_Check(line)) {
                return bad_layout(result, "a fixed line is not bytes");
            }
            if (PyBytes_GET_SIZE(line) != len ||
                memcmp(p, PyBytes_AS_STRING(line), (size_t)len) != 0) {
                goto refuse;
            }
            f++;
        }
        p = eol + 1; /* past the '\n'; only the last line has none, and the loop ends there */
    }
    if (k != nkeys || f != nfixed) {
        return bad_layout(result, "the mask does not match keys and fixed lines");
    }
    return result;

refuse:
    /* Unset items are NULL, which the list's deallocator skips. */
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"steady_values", (PyCFunction)(void (*)(void))steady_values, METH_FASTCALL,
     steady_values_doc},
    {"encode_run", (PyCFunction)(void (*)(void))collector_encode_run, METH_FASTCALL,
     collector_encode_run_doc},
    {"bulk_append", (PyCFunction)(void (*)(void))collector_bulk_append, METH_FASTCALL,
     collector_bulk_append_doc},
    {"encode_labelled", (PyCFunction)(void (*)(void))collector_encode_labelled, METH_FASTCALL,
     collector_encode_labelled_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(native_doc,
"C helpers for the scrape hot path; collector.native decides whether they are used.");

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "collector._native",
    .m_doc = native_doc,
    .m_size = 0,
    .m_methods = native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
