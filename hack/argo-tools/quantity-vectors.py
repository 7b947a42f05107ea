#!/usr/bin/env python3
r"""Writes quantity texts, one per line, escaped as quantity-oracle and
tests/argo_hash.rs read them (\\, \t, \n, \r, \xHH, \u{HEX}): edge cases, every
sign x number x suffix, and random strings from a fixed seed.

Usage: python3 hack/argo-tools/quantity-vectors.py | quantity-oracle
"""
import random

SIGNS = ["", "+", "-"]

MANTISSAS = [
    "0", "00", "000", "1", "01", "001", "2", "5", "7", "8", "9", "10", "12", "16",
    "99", "100", "101", "123", "512", "999", "1000", "1001", "1023", "1024",
    "1025", "1500", "2048", "4096", "8191", "8192", "10000", "12345", "65536",
    "100000", "123456", "999999", "1000000", "1048576", "12345678", "99999999",
    "123456789", "1000000000", "9999999999", "99999999999", "100000000000",
    "999999999999", "12345678901234", "123456789012345", "999999999999999999",
    "1000000000000000000", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "12345678901234567890", "99999999999999999999",
    "1" + "0" * 30, "123456789" * 4,
    "0.5", ".5", "5.", "0.", ".0", "1.0", "1.5", "1.000", "1.500", "1.5000",
    "0.001", "0.0001", "0.000000001", "0.0000000001", "0.00000000001", "0.1",
    "0.9", "0.999", "0.9999999999", "1.0000000001", "123.456", "1023.5",
    "1023.9999999999", "1024.0", "1024.5", "0.25", "0.125", "0.0009765625",
    "0.1234567890123456789", "12345678901234567.8", "123456789012345678.9",
    "9223372036854775807.5", "8.0", "7.99999999999", "0.000", "00.50",
    "000.001", "100.000", "1.001", "10.10", ".", "..", "1..", "1.2.3", "",
]

SUFFIXES = [
    "", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    "e0", "e1", "e2", "e3", "e-1", "e-2", "e-3", "e+3", "E3", "E-3", "E+2",
    "e6", "e9", "e-9", "e-10", "e-11", "e-12", "e15", "e18", "e19", "e20",
    "e21", "e-18", "e-21", "e100", "e-100", "e03", "e-0", "e+0", "E0", "e007",
    # Suffixes Go refuses, for one reason or another.
    "K", "mi", "ki", "i", "e", "E+", "e+", "e-", "KiB", "Ki3", "M3", "ee3",
    "eE3", "e3e", "Mi-1", "k+1", "m5", "n-3", "u+", "P1", "iK", "e1.5", "x",
    " k", "k ",
]

HAND_PICKED = [
    "1000m", "0.5", "1.5Gi", "1e3", "100M", "  2  ", "-1", "1024Mi", "0.1m",
    "12345678901234567890", "1.000", "1E3", "+3", "0", "-0", "+0", "0.0",
    "-0.0", "0Ki", "-0Ki", "0e5", "0E", "1000E", "1000000E", "999E", "1e21",
    "1e22", "1000P", "1e-9", "1e-10", "0.1n", "-0.1n", "0.9n", "1.1n",
    "0.5n", "1n", "1u", "1m", "1k", "1.5k", "1.500k", "1.5e3", "1.50e3",
    "1.500e3", "100e-2", "1e+3", "1e03", "1e1", "1e2", "1e4", "10e2",
    "+1Ki", "01Ki", "09Ki", "08Ki", "8Ki", "9Ki", "1536Ki", "1025Ki", "1Pi",
    "3Pi", "8Ei", "-8Ei", "7Ei", "7.99999999Ei", "8.0000001Ei", "16Ei",
    "99999999999999999999Ei", "9223372036854775807Ki", "9007199254740993Ki",
    "9223372036854775807m", "9223372036854775807000m", "9.223372036854775807E",
    "9.223372036854775808E", "-9223372036854775808", "-9223372036854775809",
    "0.5Ki", "0.0001Ki", "1.5Ki", "1.0Ki", "0.999Ki", "1023Ki", "1024Ki",
    ".Ki", ".Pi", ".e-9", ".e-10", "-.", "+.", ".", "-", "+", "--1", "+-1",
    "-+1", "1-", "1+", "1e", "1E", "1e+", "1K", "1 k", "1Ki ", " 1Ki",
    "1e4294967296", "1e4294967299", "1e4294967295", "1e2147483647",
    "1e2147483646", "1.5e2147483647", "15e2147483647", "1.5e-2147483648",
    "0.5e-2147483648", "1000e2147483647", "1000e2147483645",
    "999999999999999999e2147483647", "1e9223372036854775807",
    "1e-9223372036854775808", "1e9223372036854775808", "1e-9223372036854775809",
    "1234567890123456789.5e2147483640",
    "1" + "0" * 1000, "0." + "0" * 1000 + "1", "1" + "0" * 500 + "Ki",
    "9" * 300 + "e-300", "1" * 100 + "." + "1" * 100 + "Ei",
    "0." + "0" * 8 + "1", "0." + "0" * 9 + "1", "0." + "0" * 9 + "1Ki",
    "123456789012345678901234567890e-40", "1.1e-7", "1.1e-8",
    "1e-200000", "-0.5e-200000", "12345678901234567890e20000",
    "12345678901234567890e-20000", "99999999999999999999e-20000",
    # Whitespace: trimmed when Go's JSON encoder leaves it alone.
    " 1", "1 ", "   1.5Gi   ", "\\t1", "1\\t", "1\\n", "\\r\\n1", "\\x0b1",
    "\\x0c1", "\\u{a0}1", "1\\u{a0}", "\\u{85}1", "\\u{2028}1", "1\\u{2029}",
    "\\u{3000}1\\u{3000}", "\\u{1680}1", "\\u{2000}1\\u{200a}", "\\u{202f}1",
    "\\u{205f}1", "\\u{feff}1", "\\u{200b}1", "\\x1c1", "1\\x1f", "\\x00",
    " ", "   ", "\\t", "1\\\\", "\"1\"", "1<", "&1", "\\u{7f}1", "１",
    "1\\u{301}", "1µ", "1μ", "null", "true", "[1]", "{}",
]


def systematic():
    for sign in SIGNS:
        for mantissa in MANTISSAS:
            for suffix in SUFFIXES:
                yield sign + mantissa + suffix


def near_limits():
    for v in range(1000, 1050):
        for suffix in ["", "Ki", ".0", ".5", "m", "000m"]:
            yield f"{v}{suffix}"
            yield f"-{v}{suffix}"
    for n in range(1, 7):
        for d in (-1, 0, 1):
            yield str(1024 ** n + d)
            yield str(1024 ** n + d) + "Ki"
            yield "-" + str(1024 ** n + d)
            yield str(1024 ** n + d) + "000m"
    for d in range(-3, 4):
        v = str(2 ** 63 + d)
        for suffix in ["", "m", "n", "k", "Ki", "Mi", "e0", "e-3", ".5"]:
            yield v + suffix
            yield "-" + v + suffix
    # Binary fast-path precision limits: 11/12 digits Ki ... 2/3 digits Ti.
    for digits in range(1, 16):
        for suffix in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]:
            yield "9" * digits + suffix
            yield "1" + "0" * (digits - 1) + suffix
            yield "7" * digits + suffix
    # Decimal fast-path precision limit: 18 digits.
    for digits in range(15, 22):
        for suffix in ["", "m", "n", "k", "E", "e-9", "e-10"]:
            yield "9" * digits + suffix
            yield "1" + "0" * (digits - 1) + suffix
            yield "0." + "1" * digits + suffix


def random_grammar(rng, count):
    letters = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi",
               "Gi", "Ti", "Pi", "Ei"]
    for _ in range(count):
        text = rng.choice(SIGNS) + "0" * rng.choice([0, 0, 0, 1, 2])
        text += "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 22)))
        if rng.random() < 0.5:
            text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.35:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 40))
        else:
            text += rng.choice(letters)
        yield text


def random_alphabet(rng, count):
    alphabet = "0123456789.+-eEinumkKMGTP "
    for _ in range(count):
        yield "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))


def main():
    rng = random.Random(20240607)
    seen = set()
    sources = [HAND_PICKED, systematic(), near_limits(),
               random_grammar(rng, 4000), random_alphabet(rng, 2000)]
    for source in sources:
        for text in source:
            # Tabs and newlines are written as escapes by hand above.
            assert "\t" not in text and "\n" not in text
            if text not in seen:
                seen.add(text)
                print(text)


if __name__ == "__main__":
    main()
