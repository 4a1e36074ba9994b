from pgmre.cli import main

main()
