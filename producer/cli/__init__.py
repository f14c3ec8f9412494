"""`python -m producer`: a thin command line over the Client and the doors.

- `main`: the parser and the commands that run the doors (`serve`, `bridge`);
- `algorithms`, `call`: a command per algorithm, and `call NAME FILE...` for any;
- `files`: running a command over files (output, progress, exit status);
- `status`: what every algorithm queue is doing;
- `scaffold`: `new-algorithm`, a plugin package from `templates/`.
"""
