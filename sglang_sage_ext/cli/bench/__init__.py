"""`sglang-sage bench`: sage_attn against a baseline attention backend on real SGLang servers.

One module per concern: servers (launch/attach/stop), client (HTTP), metrics (pure math),
runner (the two-server orchestration), one module per subcommand, report, cli.
"""
