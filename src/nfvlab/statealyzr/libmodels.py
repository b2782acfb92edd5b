"""What library functions do to memory: one table, one model per function (issue 15).

The points-to analysis and the dependence graph used to sort library functions into lists
(allocators, "returns its first argument", pure); a function in the second list was taken to
write its first argument, so `strstr(line, conf.pattern)` made a read-only configuration
updateable. A model says separately what a call returns and which arguments it writes:

    kind      returns                             writes
    alloc     fresh heap object                   -
    realloc   fresh object or argument 0's        -
    copy      argument 0                          argument 0, from argument 1's contents
    set       argument 0                          argument 0 (constant contents)
    search    a pointer into argument 0           -                (strchr, strstr, memchr...)
    strwrite  argument 0                          argument 0       (strcpy, strcat, fgets...)
    tokenize  a pointer into argument 0           argument 0       (strtok, strsep: they cut it)
    static    a library-owned object              -                (getenv, strerror, localtime)
    pure      nothing that points anywhere        -                (strlen, strcmp, printf...)
    writes    fresh object if a pointer           the `writes` arguments only (snprintf, sscanf)

A function not in the table returns a fresh object and may write through every pointer argument
(sound default). `writes` indices may include "rest": every argument from the highest listed
index on (sscanf's outputs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LibModel:
    kind: str
    writes: tuple = ()


def _table() -> dict[str, LibModel]:
    t: dict[str, LibModel] = {}

    def put(kind: str, names: str, writes: tuple = ()) -> None:
        for n in names.split():
            t["@" + n] = LibModel(kind, writes)
    put("alloc", "malloc calloc valloc aligned_alloc memalign pvalloc strdup strndup __strdup mmap xmalloc "
                 "xcalloc xstrdup pool_alloc fopen fdopen tmpfile opendir pcap_open_live pcap_open_offline "
                 "pcap_create pcap_fopen_offline pcap_open_dead pcap_dump_open")
    put("realloc", "realloc reallocarray xrealloc")
    put("copy", "memcpy memmove bcopy __memcpy_chk __memmove_chk mempcpy")
    put("set", "memset bzero explicit_bzero __memset_chk")
    put("search", "strchr strrchr strstr strcasestr memchr memrchr strpbrk memmem rawmemchr index rindex "
                  "strchrnul")
    put("strwrite", "strcpy strncpy strcat strncat stpcpy stpncpy fgets __strcpy_chk __strncpy_chk "
                    "__strcat_chk __strncat_chk __fgets_chk")
    put("tokenize", "strtok strtok_r strsep")
    put("static", "getenv secure_getenv strerror inet_ntoa localtime gmtime ctime asctime getpwnam getpwuid "
                  "getgrnam getgrgid gethostbyname getservbyname getprotobyname ttyname __errno_location "
                  "__ctype_b_loc __ctype_tolower_loc __ctype_toupper_loc pcap_geterr pcap_lib_version "
                  "pcap_datalink_val_to_name pcap_strerror gai_strerror")
    put("pure", "strlen strnlen strcmp strncmp strcasecmp strncasecmp memcmp bcmp strspn strcspn strcoll "
                "printf fprintf vfprintf vprintf puts fputs fputc putchar putc fwrite syslog vsyslog write "
                "send sendto sendmsg pcap_inject pcap_sendpacket free cfree close fclose fflush exit _exit "
                "abort atoi atol atoll atof ntohs ntohl htons htonl isalpha isdigit isspace isalnum isupper "
                "islower isprint isxdigit ispunct tolower toupper __assert_fail perror abs labs rand random "
                "srand srandom sleep usleep getpid getppid getuid geteuid pcap_dump "
                "pcap_close pcap_dump_close pcap_datalink pcap_snapshot inet_addr socket bind listen "
                "connect setsockopt shutdown unlink chdir access kill alarm umask __printf_chk "
                "__fprintf_chk __vfprintf_chk __syslog_chk dprintf vdprintf fileno feof ferror "
                "pthread_self")
    put("writes", "snprintf vsnprintf sprintf vsprintf __snprintf_chk __sprintf_chk __vsnprintf_chk "
                  "strftime", (0,))
    put("writes", "sscanf vsscanf __isoc99_sscanf fscanf __isoc99_fscanf scanf __isoc99_scanf", (2, "rest"))
    put("writes", "inet_ntop", (2,))
    put("writes", "inet_pton inet_aton", (1, 2))
    put("writes", "time gettimeofday", (0,))
    put("writes", "clock_gettime", (1,))
    put("writes", "strtol strtoul strtoll strtoull strtod strtof strtoimax strtoumax", (1,))
    put("writes", "fread", (0,))
    put("writes", "read pread", (1,))
    put("writes", "stat fstat lstat", (1,))
    put("writes", "pthread_create", (0,))
    put("writes", "pthread_mutex_lock pthread_mutex_unlock pthread_mutex_trylock pthread_spin_lock "
                  "pthread_spin_unlock pthread_rwlock_rdlock pthread_rwlock_wrlock pthread_rwlock_unlock "
                  "pthread_cond_wait pthread_cond_signal pthread_cond_broadcast sem_wait sem_post", (0,))
    put("writes", "pthread_join", (1,))
    put("writes", "pcap_stats", (1,))
    return t


LIB: dict[str, LibModel] = _table()


def model(name: str) -> LibModel | None:
    return LIB.get(name)


def written_args(m: LibModel, nargs: int) -> list[int]:
    """Argument indices a `writes` model writes for a call with nargs arguments."""
    out = [w for w in m.writes if isinstance(w, int) and w < nargs]
    if "rest" in m.writes:
        start = max((w for w in m.writes if isinstance(w, int)), default=0)
        out += list(range(start + 1, nargs))
    return out


def names(*kinds: str) -> set[str]:
    return {n for n, m in LIB.items() if m.kind in kinds}
