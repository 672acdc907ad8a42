from bench.ct.run import main

raise SystemExit(main())
