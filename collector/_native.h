/* collector._native: what _native_append.c and _native_labels.c give the module defined in
 * _native.c. */

#ifndef COLLECTOR_NATIVE_H
#define COLLECTOR_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The two commit loops' shared steps (encode_run in _native_append.c, encode_labelled in
 * _native_labels.c). */

/* Their ``start`` and ``ts`` arguments: 0, or -1 with an exception set. A negative start is
 * past the end (nothing to take). */
static inline int
collector_run_bounds(PyObject *const *args, Py_ssize_t total, Py_ssize_t *start, long long *ts)
{
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred())
        return -1;
    long long t = PyLong_AsLongLong(args[2]);
    if (t == -1 && PyErr_Occurred())
        return -1;
    *start = i < 0 ? total : i;
    *ts = t;
    return 0;
}

/* One committed sample as the loops take it: 1, with its ref object, ref and value, when it
 * is a tuple ``(ref, value, ts)`` of exactly an int, a float and an int, stamped ``ts``, with a
 * ref that fits a Py_ssize_t and is not negative; else 0 (no exception set): Python takes it.
 * ``*same_ts`` remembers the timestamp object last found equal to ``ts`` (a scrape's samples
 * share one), so the others cost one pointer comparison. */
static inline int
collector_take_sample(PyObject *sample, long long ts, PyObject **same_ts, PyObject **ref_obj,
                      Py_ssize_t *ref, double *value)
{
    if (!PyTuple_CheckExact(sample) || PyTuple_GET_SIZE(sample) != 3)
        return 0;
    PyObject *r = PyTuple_GET_ITEM(sample, 0);
    PyObject *val = PyTuple_GET_ITEM(sample, 1);
    PyObject *sts = PyTuple_GET_ITEM(sample, 2);
    if (!PyLong_CheckExact(r) || !PyFloat_CheckExact(val) || !PyLong_CheckExact(sts))
        return 0;
    if (sts != *same_ts) {
        int overflow;
        long long this_ts = PyLong_AsLongLongAndOverflow(sts, &overflow);
        if (overflow || this_ts != ts)
            return 0;
        *same_ts = sts;
    }
    Py_ssize_t n = PyLong_AsSsize_t(r);
    if (n < 0) {
        PyErr_Clear(); /* a ref past Py_ssize_t (or negative): Python's loop takes it */
        return 0;
    }
    *ref_obj = r;
    *ref = n;
    *value = PyFloat_AS_DOUBLE(val);
    return 1;
}

extern const char collector_encode_run_doc[];
PyObject *collector_encode_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

extern const char collector_bulk_append_doc[];
PyObject *collector_bulk_append(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

extern const char collector_encode_labelled_doc[];
PyObject *collector_encode_labelled(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
