from labsession.cli import main

main()
