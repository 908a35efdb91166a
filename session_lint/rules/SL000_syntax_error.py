from __future__ import annotations

from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule


class SyntaxErrorRule(Rule):
    """
    ## What it does
    Reports a file that cannot be parsed or decoded: a syntax error, an encoding
    declaration that does not match the bytes, binary content in a `.py` file, or
    an expression nested more than 1,000 levels deep (such as a generated
    `x = a + a + …` with thousands of terms), which the parser is not given.

    ## Why is this bad?
    Nothing in the file can be checked, and nothing is fixed: `--fix` never writes a
    file it could not parse. The other files of the run are still linted.

    ## Example
    ```python
    async def handler(:
        ...
    ```

    Use instead:
    ```python
    async def handler():
        ...
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): a file that does not parse is
    broken wherever it is.
    """

    code = "SL000"
    name = "syntax-error"
    message = "file does not parse"
    roles = ALL_ROLES  # see ## Where it runs
