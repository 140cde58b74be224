/* collector._native: what _native_append.c and _native_labels.c give the module defined in
 * _native.c. */

#ifndef COLLECTOR_NATIVE_H
#define COLLECTOR_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern const char collector_encode_run_doc[];
PyObject *collector_encode_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

extern const char collector_bulk_append_doc[];
PyObject *collector_bulk_append(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

extern const char collector_encode_labelled_doc[];
PyObject *collector_encode_labelled(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
