"""Which names an exported function may take: C11 and C++ keywords, libc/libm and POSIX
symbols, reserved identifiers, the generated code's own names, and Python's for Python output.
"""

from __future__ import annotations

import builtins
import ctypes
import functools
import keyword
import re

from symcore.errors import ExportError
from symcore.ops import OPS

__all__ = ["check_name", "check_variable_names", "C_KEYWORDS", "CPP_KEYWORDS", "LIBC_NAMES",
           "LIBM_NAMES", "PYTHON_FORMATS"]

#: formats whose output is Python source (the name is a Python identifier there too)
PYTHON_FORMATS = ("py", "sympy")

C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic "
    "_Imaginary _Noreturn _Static_assert _Thread_local "
    # macros of the standard headers the code or its user includes
    "bool true false NULL NAN INFINITY HUGE_VAL EOF errno assert offsetof "
    "alignas alignof noreturn static_assert thread_local complex imaginary".split())

#: the header is included from C++ (it has an extern "C" block)
CPP_KEYWORDS = frozenset(
    "alignas alignof and and_eq asm bitand bitor bool catch char8_t char16_t char32_t class "
    "compl concept consteval constexpr constinit const_cast co_await co_return co_yield decltype "
    "delete dynamic_cast explicit export false friend mutable namespace new noexcept not not_eq "
    "nullptr operator or or_eq private protected public reinterpret_cast requires static_assert "
    "static_cast template this thread_local throw true try typeid typename using virtual "
    "wchar_t xor xor_eq final override import module std".split())

#: every function of C99/C11 <math.h> (double, float and long double forms)
_LIBM_BASE = (
    "acos asin atan atan2 cos sin tan acosh asinh atanh cosh sinh tanh exp exp2 expm1 frexp "
    "ilogb ldexp log log10 log1p log2 logb modf scalbn scalbln cbrt fabs hypot pow sqrt erf erfc "
    "lgamma tgamma ceil floor nearbyint rint lrint llrint round lround llround trunc fmod "
    "remainder remquo copysign nan nextafter nexttoward fdim fmax fmin fma").split()
LIBM_NAMES = frozenset(
    [*_LIBM_BASE, *(f + "f" for f in _LIBM_BASE), *(f + "l" for f in _LIBM_BASE),
     # classic libm extras glibc and the BSDs export
     "j0", "j1", "jn", "y0", "y1", "yn", "gamma", "drem", "scalb", "significand", "exp10",
     "pow10", "sincos", "finite", "isinf", "isnan", "isfinite", "isnormal", "signbit",
     "fpclassify", "lgamma_r", "matherr", "math_errhandling"])

#: C standard library and common POSIX/glibc functions: an exported symbol of the same name
#: would interpose on them in every library loaded after it
LIBC_NAMES = frozenset((
    # stdio.h
    "printf fprintf sprintf snprintf vprintf vfprintf vsprintf vsnprintf scanf fscanf sscanf "
    "puts fputs gets fgets putchar getchar putc getc fputc fgetc ungetc fopen freopen fclose "
    "fflush fread fwrite fseek ftell rewind fgetpos fsetpos feof ferror clearerr perror remove "
    "rename tmpfile tmpnam setbuf setvbuf stdin stdout stderr fileno fdopen popen pclose "
    "getline dprintf "
    # stdlib.h
    "malloc calloc realloc free aligned_alloc abort exit atexit at_quick_exit quick_exit _Exit "
    "getenv setenv unsetenv putenv system atoi atol atoll atof strtod strtof strtold strtol "
    "strtoll strtoul strtoull rand srand random srandom qsort bsearch abs labs llabs div ldiv "
    "lldiv mblen mbtowc wctomb mbstowcs wcstombs posix_memalign memalign valloc mkstemp "
    "realpath "
    # string.h, ctype.h
    "memcpy memmove memset memcmp memchr strcpy strncpy strcat strncat strcmp strncmp strchr "
    "strrchr strstr strlen strnlen strdup strndup strtok strerror strspn strcspn strpbrk "
    "strcoll strxfrm bzero bcopy index rindex isalnum isalpha isblank iscntrl isdigit isgraph "
    "islower isprint ispunct isspace isupper isxdigit tolower toupper "
    # time.h, signal.h, setjmp.h, locale.h
    "time clock difftime mktime asctime ctime gmtime localtime strftime nanosleep signal raise "
    "setjmp longjmp sigsetjmp siglongjmp setlocale localeconv "
    # POSIX and the process entry points
    "main _start _init _fini open close read write lseek pread pwrite dup dup2 pipe fork vfork "
    "execv execve execvp kill wait waitpid getpid getppid sleep usleep alarm pause chdir getcwd "
    "unlink rmdir mkdir stat fstat lstat access chmod chown link symlink readlink mmap munmap "
    "mprotect brk sbrk ioctl fcntl select poll socket connect bind listen accept send recv "
    "sendto recvfrom shutdown dlopen dlsym dlclose dlerror pthread_create pthread_join "
    "pthread_self syscall environ optarg optind").split())

#: names the generated code itself uses (arguments, temporaries, its C and Python imports)
_GENERATED_C = frozenset("x X out params n_rows row_stride i size_t".split())
_GENERATED_PY = frozenset("np N_VARS".split())


def _template_calls() -> frozenset[str]:
    # functions the ops table's C templates call (user-registered ops included, hence not cached)
    return frozenset(w for o in OPS.values() for w in re.findall(r"[A-Za-z_]\w*(?=\()", o.c))


@functools.lru_cache(maxsize=1)
def _process() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError, ValueError):  # no global namespace (Windows): the lists only
        return None


@functools.lru_cache(maxsize=4096)
def _host_symbol(name: str) -> bool:
    """Whether the running process's global namespace (libc, libm, the interpreter) already
    defines `name`: a second definition would interpose on it."""
    lib = _process()
    try:
        return lib is not None and hasattr(lib, name)
    except (OSError, ValueError):
        return False


def _why_not(name: str, fmt: str | None) -> str | None:
    """The reason `name` cannot name the exported function, or None."""
    python = fmt is None or fmt in PYTHON_FORMATS
    if python and keyword.iskeyword(name):
        return "a Python keyword"
    if python and (name in vars(builtins) or name in _GENERATED_PY):
        return ("a Python builtin" if name in vars(builtins)
                else "a name the exported Python module uses itself")
    if name in C_KEYWORDS:
        return "a C keyword or standard macro"
    if name in CPP_KEYWORDS:
        return "a C++ keyword (the header is used from C++)"
    if name in LIBM_NAMES or name in _template_calls():
        return "a <math.h> function the exported code may call"
    if name in LIBC_NAMES:
        return "a libc/POSIX function (the exported symbol would interpose on it)"
    if name in _GENERATED_C or re.fullmatch(r"t\d+", name):
        return "a name the generated C code uses itself"
    if name.startswith("__") or "__" in name:
        return "a reserved identifier (double underscore)"
    if name.startswith("_"):
        return "a reserved identifier (leading underscore at file scope)"
    if fmt in (None, "so", "c", "ll") and _host_symbol(name):
        return "a symbol libc/libm or the interpreter already defines"
    return None


def check_name(name: str, format: str | None = None) -> None:
    """ExportError unless `name` can name the exported function in `format` (every format's
    rules when None): an ASCII identifier that is no C/C++ keyword, libc/libm/POSIX function,
    reserved identifier or name the generated code uses, nor (for py and sympy) a Python keyword
    or builtin.  `<name>_batch` is checked too."""
    if not isinstance(name, str) or not name.isascii() or not name.isidentifier():
        raise ExportError(f"name must be a C identifier (ASCII letters, digits, underscores, not "
                          f"starting with a digit), got {name!r}")
    for n in (name, f"{name}_batch"):
        why = _why_not(n, format)
        if why is not None:
            what = "name" if n == name else f"the batch function's name (from name {name!r})"
            raise ExportError(f"{what} {n!r} is {why}; choose another (exported names may not "
                              f"be C/C++ keywords, libc/libm/POSIX functions, reserved "
                              f"identifiers or, for Python output, Python keywords/builtins)")


def check_variable_names(names: dict[int, str]) -> None:
    """ExportError unless every variable name can be printed in the exported documentation
    (C comments, Python docstrings, JSON): an identifier, so it cannot end a comment."""
    for j, nm in sorted(names.items()):
        if not isinstance(nm, str) or not nm.isidentifier():
            raise ExportError(f"variable x{j} has name {nm!r}, which is not an identifier")
