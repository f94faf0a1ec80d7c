// Status and method codes written once per primitive, as X-macro lists of
// (enumerator, name, value): the C++ enum is generated from the list and the binding exports the
// same list as a {name: value} dict, which the Python layer and the portable kernels read.
#pragma once

#define LC_ENUMERATOR(enumerator, name, value) enumerator = value,
