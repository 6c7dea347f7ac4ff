from trainatlas.cli import main

raise SystemExit(main())
