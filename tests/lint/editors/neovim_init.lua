-- A minimal Neovim (0.7+) config that starts `session-lint server` for one file,
-- waits for its diagnostics and writes them out, one per line:
-- "<code> <lnum> <col> <end_lnum> <end_col> <source>" (0-based, byte columns).
-- Driven by tests/lint/test_neovim.py through environment variables.
local file = os.getenv("SESSION_LINT_FILE")
local output = os.getenv("SESSION_LINT_OUTPUT")
local id = vim.lsp.start_client({
  name = "session-lint",
  cmd = { os.getenv("SESSION_LINT"), "server" },
  root_dir = os.getenv("SESSION_LINT_ROOT"),
})
vim.cmd("edit " .. vim.fn.fnameescape(file))
vim.lsp.buf_attach_client(0, id)
local done = vim.wait(60000, function() return #vim.diagnostic.get(0) > 0 end, 20)
local lines = {}
for _, d in ipairs(vim.diagnostic.get(0)) do
  local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code) or "?"
  table.insert(lines, string.format("%s %d %d %d %d %s", code, d.lnum, d.col, d.end_lnum, d.end_col, d.source or "?"))
end
if not done then table.insert(lines, "TIMEOUT") end
vim.fn.writefile(lines, output)
vim.cmd("qa!")
